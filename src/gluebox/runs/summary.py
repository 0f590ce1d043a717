"""``summary.json``: what a complete run ended with, written last."""

from __future__ import annotations

import math
import time

from gluebox import resources


def build_summary(records: list[dict], recipe, started: float, device: str, processes: int, outcome=None) -> dict:
    """Final and best metrics, fingerprints, time and memory of a complete run.

    ``recipe`` is the run's :class:`gluebox.recipe.build.Recipe` (config, task, plan, data); ``outcome``
    the :class:`gluebox.training.loop.Outcome` of its training (the steps planned, why it stopped early).
    Each record is a validation: every epoch's end, or every ``--eval_every_n_steps`` steps, and the last step.
    """

    def metrics_only(record: dict) -> dict:
        return {k: v for k, v in record.items() if not k.startswith("perf/")}

    config, task, monitor, train_split = recipe.config, recipe.task, recipe.monitor, recipe.encoded["train"]
    best, nan_epochs = best_record(records, monitor.key, monitor.greater_is_better)
    fingerprint_key = f"{task.validation_splits[0]}/fingerprint"
    trained = records[-1].get("epochs_trained", records[-1]["epoch"])
    summary = {
        "status": "complete",
        "task": task.name,
        "model": config.model_name_or_path,
        "seed": config.seed,
        "epochs": int(trained) if float(trained).is_integer() else trained,
        "validations": len(records),
        "main_metric": monitor.key,
        "final": metrics_only(records[-1]),
        "best_epoch": best["epoch"],
        "best_step": best["step"],
        "best": metrics_only(best),
        "fingerprint": records[-1][fingerprint_key],
        "best_fingerprint": best[fingerprint_key],
        "wall_time_seconds": time.time() - started,
        "train_seconds": sum(r["perf/epoch_seconds"] for r in records),
        "peak_rss_mb": resources.peak_rss_bytes() / 2**20,
        "train_examples": len(train_split),
        "train_tokens_per_epoch": train_split.num_tokens,
        "memory_plan": recipe.plan.to_dict(),
        "device": device,
        "torch_threads": recipe.threads,
        "steps": records[-1]["step"],
        "processes": processes,
    }
    if outcome is not None:
        summary["planned_steps"] = outcome.planned_steps
        summary["stopped_early"] = outcome.stop_reason is not None
        if outcome.stop_reason is not None:
            summary["stop_reason"] = outcome.stop_reason
    if nan_epochs:
        summary["nan_epochs"] = nan_epochs
        summary["note"] = nan_note(monitor.key, nan_epochs, len(records))
    return summary


def best_record(records: list[dict], monitor: str, greater_is_better: bool = True) -> tuple[dict, list[int]]:
    """The record with the best ``monitor`` (the first of equals), and the epochs whose ``monitor`` was NaN.

    A NaN is never the best (as in :meth:`gluebox.training.checkpoints.Checkpoints.save_if_best`);
    when every record's is NaN, the last one stands in (``best_model/`` holds it).
    """
    from gluebox.tasks import is_better

    nan_epochs = [r["epoch"] for r in records if is_nan(r.get(monitor))]
    valid = [r for r in records if not is_nan(r.get(monitor))]
    if not valid:
        return records[-1], nan_epochs
    best = valid[0]
    for record in valid[1:]:
        if is_better(record[monitor], best[monitor], greater_is_better):
            best = record
    return best, nan_epochs


def budget_summary(budget_seconds: float, spent: float, planned_steps: int, steps: int) -> dict:
    """How a ``--time_budget`` run ended against its budget (``spent``: every session's seconds, up to the summary)."""
    return {
        "budget_seconds": budget_seconds,
        "spent_seconds": spent,
        "share_used": spent / budget_seconds,
        "within_budget": spent <= budget_seconds,
        "planned_steps": planned_steps,
        "steps": steps,
        "note": (f"ended {abs(budget_seconds - spent):.1f} s {'inside' if spent <= budget_seconds else 'beyond'} "
                 f"the budget of {budget_seconds:g} s ({100 * spent / budget_seconds:.1f}% used), "
                 f"after {steps} planned optimizer steps"),
    }


def is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def nan_note(monitor: str, nan_epochs: list[int], epochs: int) -> str:
    """What ``summary.json`` says about NaN main metrics (a Pearson over constant predictions is NaN)."""
    listed = ", ".join(str(epoch) for epoch in nan_epochs)
    if len(nan_epochs) == epochs:
        return (f"{monitor} was NaN in every epoch (constant predictions?): no epoch is best by it; "
                "best_model/ and the best metrics are the last epoch's")
    return f"{monitor} was NaN in epoch(s) {listed} (constant predictions?): never counted as best"
