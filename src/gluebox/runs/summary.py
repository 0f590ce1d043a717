"""``summary.json``: what a complete run ended with, written last."""

from __future__ import annotations

import time

from gluebox import resources


def build_summary(records: list[dict], recipe, started: float, device: str, processes: int) -> dict:
    """Final and best metrics, fingerprints, time and memory of a complete run.

    ``recipe`` is the run's :class:`gluebox.recipe.build.Recipe` (config, task, plan, data).
    """

    def metrics_only(record: dict) -> dict:
        return {k: v for k, v in record.items() if not k.startswith("perf/")}

    config, task, monitor, train_split = recipe.config, recipe.task, recipe.monitor, recipe.encoded["train"]
    best = records[0]
    for record in records[1:]:
        if record[monitor] > best[monitor]:
            best = record
    fingerprint_key = f"{task.validation_splits[0]}/fingerprint"
    return {
        "status": "complete",
        "task": task.name,
        "model": config.model_name_or_path,
        "seed": config.seed,
        "epochs": len(records),
        "main_metric": monitor,
        "final": metrics_only(records[-1]),
        "best_epoch": best["epoch"],
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
