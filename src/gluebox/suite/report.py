"""The suite's results: each task's GLUE metrics, the GLUE score, results.md/.csv and the learning curves.

The GLUE score is computed as the leaderboard computes it (Wang et al., 2018): the mean over
the nine tasks of each task's score, a task's score being the unweighted mean of its metrics:
MRPC and QQP accuracy and F1, STS-B Pearson and Spearman, MNLI matched and mismatched
accuracy, CoLA Matthews correlation, the others accuracy. The leaderboard scores the test
sets; the suite scores the validation sets, with each task's best epoch (the weights in
``best_model/``, which the submission's predictions come from). AX is not part of the score.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gluebox.runs.directory import SUMMARY, RunDirectory, atomic_write_text
from gluebox.suite.plan import duration
from gluebox.suite.spec import PLOT, RESULTS_CSV, RESULTS_MD, Suite
from gluebox.tasks import GLUE_SCORE_TASKS, GLUE_TASKS

DISPLAY = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B", "mnli": "MNLI",
           "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}
METRIC_NAMES = {"accuracy": "acc.", "f1": "F1", "matthews_correlation": "Matthews corr.", "pearson": "Pearson",
                "spearmanr": "Spearman"}
SCORE_COLUMNS = tuple(dict.fromkeys(m for name in GLUE_SCORE_TASKS for m in GLUE_TASKS[name].score_metrics))
"""Every metric the GLUE score uses, as a results.csv column."""


@dataclass
class TaskResult:
    task: str
    status: str
    """complete, failed, interrupted, running, or "not run"."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The score metrics of the best epoch (validation)."""
    epochs: int | None = None
    best_epoch: int | None = None
    train_seconds: float | None = None
    run_dir: str = ""
    message: str = ""

    @property
    def score(self) -> float | None:
        return task_score(self.task, self.metrics) if self.status == "complete" else None


def task_score(task: str, metrics: dict[str, float]) -> float | None:
    """The unweighted mean of the task's GLUE metrics; None when one is missing."""
    values = [metrics.get(name) for name in GLUE_TASKS[task].score_metrics]
    if not values or any(not isinstance(v, (int, float)) for v in values):
        return None
    return sum(values) / len(values)


def glue_score(results: list[TaskResult]) -> tuple[float | None, int]:
    """The mean of the task scores there are, and how many tasks it averages (9 for the real GLUE score)."""
    scores = [r.score for r in results if r.task in GLUE_SCORE_TASKS and r.score is not None]
    return (sum(scores) / len(scores) if scores else None), len(scores)


def collect(suite: Suite) -> list[TaskResult]:
    """One result for each of the nine tasks, from the run directories and ``progress.json``."""
    progress = suite.progress()
    results = []
    for name in GLUE_SCORE_TASKS:
        if name not in suite.tasks:
            results.append(TaskResult(name, "not run"))
            continue
        run = RunDirectory(suite.run_path(name))
        outcome = progress.get(name, {})
        status = (run.status() or {}).get("status") if run.path.is_dir() else None
        result = TaskResult(name, status or "not run", run_dir=str(run.path.relative_to(suite.path)))
        summary = run.read_json(SUMMARY) if run.file(SUMMARY).is_file() and status == "complete" else None
        if summary is not None:
            best = summary["best"]
            result.metrics = {k: best[k] for k in GLUE_TASKS[name].score_metrics if k in best}
            result.epochs, result.best_epoch = summary["epochs"], summary["best_epoch"]
            result.train_seconds = summary.get("train_seconds")
        if outcome.get("status") in ("failed", "interrupted"):
            result.status, result.message = outcome["status"], outcome.get("error", "")
        results.append(result)
    return results


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _metric_label(task: str, key: str) -> str:
    split, metric = key.split("/", 1)
    label = METRIC_NAMES.get(metric, metric)
    if task == "mnli":
        label += " " + ("m" if split.endswith("_matched") else "mm")
    return label


def results_csv(results: list[TaskResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["task", "status", "score", *SCORE_COLUMNS, "epochs", "best_epoch", "train_seconds", "run_dir",
                     "message"])
    for r in results:
        writer.writerow([r.task, r.status, "" if r.score is None else repr(r.score),
                         *("" if r.metrics.get(c) is None else repr(r.metrics[c]) for c in SCORE_COLUMNS),
                         r.epochs or "", r.best_epoch or "", "" if r.train_seconds is None else round(r.train_seconds, 1),
                         r.run_dir, r.message])
    score, count = glue_score(results)
    writer.writerow(["GLUE", f"{count} of {len(GLUE_SCORE_TASKS)} tasks", "" if score is None else repr(score),
                     *([""] * len(SCORE_COLUMNS)), "", "", "", "", ""])
    return buffer.getvalue()


def results_markdown(suite: Suite, results: list[TaskResult], placeholders: list[str] | None) -> str:
    score, count = glue_score(results)
    lines = [
        "# GLUE results", "",
        f"Model `{suite.model}`; suite `{suite.path.name}`. Validation-set metrics x 100, from each task's best epoch "
        "(the weights in `best_model/`, which the submission's predictions come from).", "",
        "| task | status | metrics (validation) | task score | epochs | best epoch | train time | run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        metrics = " / ".join(f"{_metric_label(r.task, k)} {_pct(v)}" for k, v in r.metrics.items())
        status = r.status + (f": {r.message}" if r.message else "")
        lines.append(f"| {DISPLAY[r.task]} | {status.replace('|', '/')} | {metrics} | {_pct(r.score)} | {r.epochs or ''} | "
                     f"{r.best_epoch or ''} | {'' if r.train_seconds is None else duration(r.train_seconds)} | "
                     f"{('`' + r.run_dir + '`') if r.status != 'not run' else ''} |")
    lines.append("")
    if count == len(GLUE_SCORE_TASKS):
        lines.append(f"**GLUE score (validation): {_pct(score)}**: the mean of the nine task scores, each the mean of "
                     "its metrics, as the leaderboard computes its score from the test sets.")
    else:
        missing = [DISPLAY[r.task] for r in results if r.score is None]
        lines.append(f"**GLUE score over {count} of {len(GLUE_SCORE_TASKS)} tasks (validation): "
                     f"{_pct(score) or 'none'}**: the mean of those task scores, each the mean of its metrics. It is "
                     f"not the GLUE score, which averages all nine; without a score: {', '.join(missing)}.")
    lines.append("")
    if "mnli" in suite.tasks:
        lines.append("AX (the diagnostic set) is predicted with the MNLI run; it has no labels here and is not part "
                     "of the score.")
        lines.append("")
    if placeholders is not None:
        lines.append("`submission.zip`: the 11 files gluebenchmark.com expects"
                     + (f"; placeholders (a constant prediction, the right length) for {', '.join(placeholders)}."
                        if placeholders else ", every one predicted."))
        lines.append("")
    return "\n".join(lines)


def write_results(suite: Suite, results: list[TaskResult], placeholders: list[str] | None) -> None:
    atomic_write_text(suite.path / RESULTS_CSV, results_csv(results))
    atomic_write_text(suite.path / RESULTS_MD, results_markdown(suite, results, placeholders))


def write_plot(suite: Suite) -> Path | None:
    """One panel per task: the main validation metric (and the validation loss) per epoch."""
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    for name in suite.tasks:
        run = RunDirectory(suite.run_path(name))
        records = run.metrics() if run.path.is_dir() else []
        if records:
            runs.append((name, records))
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(runs))
    rows = -(-len(runs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat[len(runs):]:
        axis.set_visible(False)
    for axis, (name, records) in zip(axes.flat, runs):
        task = GLUE_TASKS[name]
        epochs = [r["epoch"] for r in records]
        for split in task.validation_splits:
            key = f"{split}/{task.main_metric}"
            label = METRIC_NAMES.get(task.main_metric, task.main_metric) + (f" ({split.split('_')[-1]})" if name == "mnli" else "")
            axis.plot(epochs, [r.get(key) for r in records], marker="o", label=label)
        loss_axis = axis.twinx()
        loss_axis.plot(epochs, [r.get(f"{task.validation_splits[0]}/loss") for r in records], color="grey",
                       linestyle="--", marker=".", label="validation loss")
        loss_axis.set_ylabel("validation loss", fontsize=8, color="grey")
        axis.set_title(DISPLAY[name])
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.legend(fontsize=7, loc="lower right")
    figure.suptitle(f"GLUE: {suite.model}")
    figure.tight_layout()
    target = suite.path / PLOT
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    from gluebox.runs.directory import atomic_write_bytes

    atomic_write_bytes(target, buffer.getvalue())
    return target
