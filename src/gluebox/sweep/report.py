"""What a sweep writes at the end: leaderboard (Markdown and CSV), plot, and ``sweep.json``.

Everything is read from the trials' run directories (status, metrics per epoch), the same
files ``gluebox plot`` and ``gluebox compare`` read. A trial is ranked by the best value of the
sweep's metric over its epochs (the epoch its best checkpoint comes from when the metric is
the task's main metric); trials without any finished epoch come last.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gluebox.runs.directory import RunDirectory, atomic_write_json, atomic_write_text

LEADERBOARD_MD = "leaderboard.md"
LEADERBOARD_CSV = "leaderboard.csv"
PLOT = "sweep.png"
SWEEP_JSON = "sweep.json"


@dataclass
class TrialOutcome:
    """One trial as its run directory (and Ray Tune) left it."""

    name: str
    params: dict[str, Any]
    status: str
    """The run directory's status: complete, stopped, interrupted, failed, running, or missing."""
    epochs: int
    best: float | None
    best_epoch: int | None
    final: float | None
    curve: list[float] = field(default_factory=list)
    """The metric after each finished epoch."""
    run_dir: str = ""
    reason: str | None = None
    """Why a trial did not complete (status details or Ray Tune's error)."""
    rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_outcome(name: str, params: dict[str, Any], run_path: Path, metric: str, mode: str,
                 tune_error: str | None = None) -> TrialOutcome:
    run = RunDirectory(run_path)
    status = run.status() or {}
    records = run.metrics() if run.path.is_dir() else []
    curve = [r[metric] for r in records if isinstance(r.get(metric), (int, float))]
    best = best_epoch = None
    numbers = [value for value in curve if not math.isnan(value)]  # a NaN is never the best
    if numbers:
        pick = max if mode == "max" else min
        best = pick(numbers)
        best_epoch = curve.index(best) + 1
    reason = status.get("reason") or status.get("error") or tune_error
    return TrialOutcome(
        name=name, params=params,
        status=status.get("status", "missing" if not run.path.exists() else "unknown"),
        epochs=len(records), best=best, best_epoch=best_epoch, final=curve[-1] if curve else None,
        curve=curve, run_dir=str(run_path), reason=reason,
    )


def rank_outcomes(outcomes: list[TrialOutcome], mode: str) -> list[TrialOutcome]:
    """Best first by the metric; trials without a value last; ties by name. Sets ``rank``."""
    def key(o: TrialOutcome):
        if o.best is None:
            return (1, 0.0, o.name)
        return (0, -o.best if mode == "max" else o.best, o.name)

    ranked = sorted(outcomes, key=key)
    for number, outcome in enumerate(ranked, start=1):
        outcome.rank = number
    return ranked


def _columns(ranked: list[TrialOutcome], metric: str) -> list[str]:
    params: list[str] = []
    for o in ranked:
        params.extend(k for k in o.params if k not in params)
    return ["rank", "trial", "status", "epochs", f"best {metric}", "best epoch", f"final {metric}", *params, "run directory"]


def _row(o: TrialOutcome, params: list[str], sweep_dir: Path) -> list[Any]:
    try:
        where = str(Path(o.run_dir).relative_to(sweep_dir))
    except ValueError:
        where = o.run_dir
    return [o.rank, o.name, o.status, o.epochs, o.best, o.best_epoch, o.final, *[o.params.get(p) for p in params], where]


def leaderboard_markdown(ranked: list[TrialOutcome], metric: str, mode: str, sweep_dir: Path) -> str:
    columns = _columns(ranked, metric)
    params = columns[7:-1]
    lines = [f"Trials ranked by the best {metric} over their epochs ({mode}imum first).", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for o in ranked:
        cells = ["" if v is None else f"{v:.5f}" if isinstance(v, float) and k.startswith(("best ", "final ")) else
                 f"{v:.4g}" if isinstance(v, float) else str(v)
                 for k, v in zip(columns, _row(o, params, sweep_dir))]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {o.name}: {o.reason}" for o in ranked if o.status != "complete" and o.reason]
    if notes:
        lines += ["", "Trials that did not complete:", "", *notes]
    return "\n".join(lines) + "\n"


def leaderboard_csv(ranked: list[TrialOutcome], metric: str, sweep_dir: Path) -> str:
    columns = _columns(ranked, metric)
    params = columns[7:-1]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for o in ranked:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in _row(o, params, sweep_dir)])
    return buffer.getvalue()


def plot_sweep(ranked: list[TrialOutcome], metric: str, target: Path, title: str) -> None:
    """Left: the metric per epoch of every trial. Right: each trial's best value, best at the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, bars) = plt.subplots(1, 2, figsize=(12, 4.5))
    for number, o in enumerate(ranked):
        if o.curve:
            style = "-" if o.status == "complete" else ":"
            curves.plot(range(1, len(o.curve) + 1), o.curve, style, marker="os^Dvx+*"[number % 8], label=o.name, alpha=0.85)
    curves.set(xlabel="epoch", ylabel=metric, title=f"{metric} per epoch (dotted: did not complete)")
    curves.grid(alpha=0.3)
    curves.xaxis.get_major_locator().set_params(integer=True)
    if any(o.curve for o in ranked):
        curves.legend(fontsize=7, loc="best")
    scored = [o for o in ranked if o.best is not None]
    names = [f"{o.name} ({o.status})" if o.status != "complete" else o.name for o in scored]
    bars.barh(range(len(scored)), [o.best for o in scored], color="tab:blue", alpha=0.8)
    bars.set_yticks(range(len(scored)), names, fontsize=8)
    bars.invert_yaxis()
    bars.set(xlabel=f"best {metric}", title="Leaderboard")
    bars.grid(alpha=0.3, axis="x")
    if scored:
        low, high = min(o.best for o in scored), max(o.best for o in scored)
        margin = (high - low) * 0.1 or 0.01
        bars.set_xlim(low - margin, high + margin)
    figure.suptitle(title)
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(target)


def write_reports(sweep_dir: Path, ranked: list[TrialOutcome], metric: str, mode: str, summary: dict[str, Any]) -> None:
    atomic_write_text(sweep_dir / LEADERBOARD_MD, leaderboard_markdown(ranked, metric, mode, sweep_dir))
    atomic_write_text(sweep_dir / LEADERBOARD_CSV, leaderboard_csv(ranked, metric, sweep_dir))
    plot_sweep(ranked, metric, sweep_dir / PLOT, f"{sweep_dir.name}: {len(ranked)} trial(s)")
    atomic_write_json(sweep_dir / SWEEP_JSON, summary | {
        "best": ranked[0].to_dict() if ranked and ranked[0].best is not None else None,
        "trials": [o.to_dict() for o in ranked],
    })


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    return json.loads((sweep_dir / SWEEP_JSON).read_text(encoding="utf-8"))
