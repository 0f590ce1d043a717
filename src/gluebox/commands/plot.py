"""``gluebox plot``: validation loss and the main metric per epoch, one line per run.

Writes a PNG with two panels and, beside it, a Markdown table of each run's final metrics.
"""

from __future__ import annotations

from pathlib import Path

from gluebox.errors import GlueboxError
from gluebox.runs.directory import SUMMARY, TASK, atomic_write_text, open_run
from gluebox.tasks import Task


def _load(path: str) -> tuple[str, Task, list[dict], dict | None]:
    run = open_run(path)
    records = run.metrics()
    if not records:
        raise GlueboxError(f"{path} has no finished epochs to plot")
    return run.path.name, Task.from_dict(run.read_json(TASK)), records, run.read_json(SUMMARY)


def markdown_table(runs: list[tuple[str, Task, list[dict], dict | None]]) -> str:
    """One row per run: its final metrics, best epoch and prediction fingerprint."""
    metric_keys: list[str] = []
    for _, _, records, _ in runs:
        metric_keys.extend(k for k in records[-1] if "/" in k and not k.startswith("perf/")
                           and not k.endswith("fingerprint") and k not in metric_keys)
    header = ["run", "epochs", *metric_keys, "best epoch", "fingerprint"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, _, records, summary in runs:
        final = records[-1]
        cells = [name, str(len(records))]
        cells += [_cell(final.get(k)) for k in metric_keys]
        cells.append(str(summary["best_epoch"]) if summary else "unfinished")
        fingerprint = (summary or {}).get("fingerprint") or next((v for k, v in final.items() if k.endswith("fingerprint")), "")
        cells.append(fingerprint[:12])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    """A float to 5 decimals, a count as it is, anything else blank."""
    if isinstance(value, float):
        return f"{value:.5f}"
    return str(value) if isinstance(value, int) else ""


def plot(paths: list[str], output: str, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [_load(p) for p in paths]
    target = Path(output)
    if target.suffix.lower() != ".png":
        raise GlueboxError(f"--output {output}: plots are written as .png")
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^vx+*"
    for number, (name, task, records, _) in enumerate(runs):
        split = task.validation_splits[0] if task.validation_splits else "validation"
        epochs = [r["epoch"] for r in records]
        style = dict(marker=markers[number % len(markers)], label=name, alpha=0.85)
        loss_axis.plot(epochs, [r[f"{split}/loss"] for r in records], **style)
        metric_axis.plot(epochs, [r[f"{split}/{task.main_metric}"] for r in records], **style)
    main = runs[0][1].main_metric
    loss_axis.set(xlabel="epoch", ylabel="validation loss", title="Validation loss")
    metric_axis.set(xlabel="epoch", ylabel=f"validation {main}", title=f"Validation {main}")
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    metric_axis.legend(fontsize=8, loc="best")
    figure.suptitle(title or f"{runs[0][1].name}: {len(runs)} run(s)")
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=120)
    plt.close(figure)
    table = target.with_suffix(".md")
    atomic_write_text(table, markdown_table(runs))
    print(f"wrote {target} and {table}", flush=True)
    return target
