"""``gluebox plot``: the training loss of every step, validation loss and the main metric at every
validation (epoch ends, or every ``--eval_every_n_steps`` steps), one line per run.

Writes a PNG with three panels on one epoch axis (ticks at whole epochs) and, beside it, a Markdown
table of each run's final metrics.
"""

from __future__ import annotations

import math
from pathlib import Path

from gluebox.errors import GlueboxError
from gluebox.runs.directory import STEPS, SUMMARY, TASK, atomic_write_text, open_run
from gluebox.tasks import Task


def _load(path: str) -> tuple[str, Task, list[dict], dict | None]:
    run = open_run(path)
    records = run.metrics()
    if not records:
        raise GlueboxError(f"{path} has no finished epochs to plot")
    return run.path.name, Task.from_dict(run.read_json(TASK)), records, run.read_json(SUMMARY)


def step_losses(path: str) -> tuple[list[float], list[float]]:
    """The training loss of every optimizer step in ``steps/metrics.csv`` up to the last validation, against
    the epoch as a fraction (step ``k`` of an epoch of ``n`` steps at ``epoch - 1 + k / n``), so that the step
    of a validation sits where that validation is drawn. None without the file."""
    from gluebox.training.recorders import read_step_rows

    run = open_run(path)
    records = run.metrics()
    if not records:
        return [], []
    last = records[-1]
    steps_per_epoch = last["step"] / validation_x(last)
    rows = [r for r in read_step_rows(run.file(STEPS) / "metrics.csv") if int(r["step"]) <= last["step"]]
    return [int(r["step"]) / steps_per_epoch for r in rows], [float(r["loss"]) for r in rows]


def validation_x(record: dict) -> float:
    """Where a validation sits on the epoch axis: its ``epochs_trained`` (a run of an earlier gluebox
    validated at epoch ends only)."""
    return record.get("epochs_trained", record["epoch"])


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


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
        cells = [name, f"{validation_x(final):g}"]
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


def curves_figure(paths: list[str], title: str | None = None):
    """The figure: training loss per step (and per epoch), validation loss, validation main metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs = [_load(p) for p in paths]
    figure, (train_axis, loss_axis, metric_axis) = plt.subplots(1, 3, figsize=(15, 4.2), sharex=True)
    markers = "osD^vx+*"
    for number, ((name, task, records, _), path) in enumerate(zip(runs, paths)):
        split = task.validation_splits[0] if task.validation_splits else "validation"
        epochs = [validation_x(r) for r in records]
        style = dict(marker=markers[number % len(markers)], label=name, alpha=0.85)
        steps_x, steps_loss = step_losses(path)
        if steps_x:
            (line,) = train_axis.plot(steps_x, steps_loss, linewidth=0.8, alpha=0.35, label=f"{name} (each step)")
            window = max(1, len(steps_loss) // 25)
            train_axis.plot(steps_x, _moving_average(steps_loss, window), color=line.get_color(), linewidth=1.6,
                            label=f"{name} (mean of {window} steps)" if window > 1 else None)
            style["color"] = line.get_color()
        if all("train/loss" in r for r in records):
            train_axis.plot(epochs, [r["train/loss"] for r in records], linestyle="none", **style)
        loss_axis.plot(epochs, [r[f"{split}/loss"] for r in records], **style)
        metric_axis.plot(epochs, [r[f"{split}/{task.main_metric}"] for r in records], **style)
    main = runs[0][1].main_metric
    train_axis.set(xlabel="epoch", ylabel="training loss", title="Training loss (markers: mean per validation)")
    loss_axis.set(xlabel="epoch", ylabel="validation loss", title="Validation loss")
    metric_axis.set(xlabel="epoch", ylabel=f"validation {main}", title=f"Validation {main}")
    last_epoch = math.ceil(max(validation_x(records[-1]) for _, _, records, _ in runs))
    for axis in (train_axis, loss_axis, metric_axis):
        axis.grid(alpha=0.3)
        # Whole epochs only, from 0 (where training starts) to the last one: a 1-epoch run gets 0 and 1.
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    train_axis.set_xlim(0, last_epoch + max(0.05, 0.03 * last_epoch))
    train_axis.legend(fontsize=7, loc="best")
    metric_axis.legend(fontsize=8, loc="best")
    figure.suptitle(title or f"{runs[0][1].name}: {len(runs)} run(s)")
    figure.tight_layout()
    return figure, runs


def plot(paths: list[str], output: str, title: str | None = None) -> Path:
    target = Path(output)
    if target.suffix.lower() != ".png":
        raise GlueboxError(f"--output {output}: plots are written as .png")
    figure, runs = curves_figure(paths, title)
    import matplotlib.pyplot as plt

    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=120)
    plt.close(figure)
    table = target.with_suffix(".md")
    atomic_write_text(table, markdown_table(runs))
    print(f"wrote {target} and {table}", flush=True)
    return target
