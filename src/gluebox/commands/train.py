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
    from gluebox.recipe.train import train
    from gluebox.runs.directory import SUMMARY

    if args.resume is not None:
        from gluebox.recipe.resume import prepare_resume

        config, resume = prepare_resume(args.resume, given_values(args.config, flag_values(args)))
        run = train(config, resume)
    else:
        run = train(resolve_train_config(args))
    summary = run.read_json(SUMMARY) if run.file(SUMMARY).exists() else None
    if summary is not None:  # rank 0 of a multi-process run, or the only process
        final = ", ".join(f"{k} {v:.4f}" for k, v in summary["final"].items() if isinstance(v, float))
        print(f"run complete: {run.path} ({final})", flush=True)
    return 0
