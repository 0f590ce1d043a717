"""``gluebox train``: the flags (or ``--resume RUN``) become a config, the recipe runs, the result is reported."""

from __future__ import annotations

import argparse
from typing import Any

from gluebox.config import TrainConfig, config_fields, given_values, resolve


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The train flags given on the command line (unset flags are absent, so layers below show through)."""
    return {f.name: getattr(args, f.name) for f in config_fields() if hasattr(args, f.name)}


def resolve_train_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then GLUEBOX_* environment variables, then the YAML file, then the command line."""
    return resolve(given_values(args.config, flag_values(args)))


def train_command(args: argparse.Namespace) -> int:
    from functools import partial

    from gluebox.recipe.train import train as train_run
    from gluebox.runs.directory import SUMMARY
    from gluebox.training.budget import process_started

    train = partial(train_run, started=process_started())  # --time_budget counts from the command's start

    if args.resume is not None:
        from gluebox.recipe.resume import prepare_resume

        config, resume = prepare_resume(args.resume, given_values(args.config, flag_values(args)))
        run = train(config, resume)
    else:
        config = resolve_train_config(args)
        if config.accept_changes:
            from gluebox.errors import GlueboxError

            raise GlueboxError("--accept_changes only applies with --resume RUN_DIR (a new run has nothing to change)")
        run = train(config)
    summary = run.read_json(SUMMARY) if run.file(SUMMARY).exists() else None
    if summary is not None:  # rank 0 of a multi-process run, or the only process
        print(describe_result(run.path, summary, config), flush=True)
    return 0


def describe_result(path, summary: dict, config: TrainConfig) -> str:
    """The end of a run in a few lines: best epoch and its metrics, time, memory, where the model is,
    and the commands to plot the run and to predict with it."""
    import shlex

    from gluebox.runs.directory import BEST_MODEL
    from gluebox.training.eta import duration

    run = shlex.quote(str(path))
    best = summary["best"]
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in best.items()
                        if isinstance(v, float) and "/" in k and not k.startswith("train/"))
    plan = summary.get("memory_plan") or {}
    estimated = f" (estimated {plan['estimated_peak_bytes'] / 1e9:.2f} GB)" if plan.get("estimated_peak_bytes") else ""
    if config.uses_custom_files and config.test_file is None:
        predict = f"gluebox predict {run} --file YOUR_DATA.csv --output predictions.csv"
    else:
        predict = f"gluebox predict {run} --output {shlex.quote(str(path / 'predictions.tsv'))}"
    note = [f"  note: {summary['note']}"] if summary.get("note") else []
    if summary.get("stop_reason"):
        note.append(f"  stopped early: {summary['stop_reason']}")
    if summary.get("time_budget"):
        note.append(f"  time budget: {summary['time_budget']['note']}")
    if isinstance(summary["epochs"], int) and summary.get("validations", summary["epochs"]) == summary["epochs"]:
        best_at = f"epoch {summary['best_epoch']} of {summary['epochs']}"
    else:
        best_at = (f"validation at step {summary['best_step']} (epoch {summary['best_epoch']}) of "
                   f"{summary['validations']} over {summary['epochs']:.3g} epoch(s)")
    return "\n".join([
        f"run complete: {path}",
        f"  best {best_at} (by {summary['main_metric']}): {metrics}",
        f"  time {duration(summary['wall_time_seconds'])} (training {duration(summary['train_seconds'])}); "
        f"peak memory {summary['peak_rss_mb'] * 2**20 / 1e9:.2f} GB RSS{estimated}",
        f"  best model: {path / BEST_MODEL} (Hugging Face format, with a model card)",
        f"  plot it:    gluebox plot {run} --output {shlex.quote(str(path / 'learning_curves.png'))}",
        f"  predict:    {predict}",
        *note,
    ])
