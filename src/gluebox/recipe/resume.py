"""``gluebox train --resume RUN_DIR``: which runs can be resumed, and with which settings.

A resumed run takes every setting from ``RUN_DIR/config.yaml``, its memory plan from
``memory_plan.json`` and its thread count from ``environment.json``, so that it finishes
exactly as the uninterrupted run would have (``gluebox compare`` finds them identical).
Only flags that cannot change the results may be given again with other values.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gluebox.config import TrainConfig
from gluebox.errors import GlueboxError
from gluebox.training.memory import MemoryPlan
from gluebox.runs.directory import CHECKPOINTS, CONFIG, ENVIRONMENT, MEMORY_PLAN, RunDirectory, check_checkpoint_dir

LAST_CHECKPOINT = "last.ckpt"

RESUMABLE_FLAGS = frozenset({
    "progress_bar", "checkpoint_every_minutes", "checkpoint_every_n_steps", "checkpoint_dir",
    "wandb_mode", "wandb_project", "wandb_run_name", "log_model",
})
"""Flags that may take new values on resume: none of them touches the maths. A new
``--checkpoint_dir`` (say, on a disk with room) gets the checkpoints from then on; the run
resumes from the last checkpoint in the old one."""


@dataclass
class Resume:
    """An unfinished run to continue."""

    run: RunDirectory
    checkpoint: Path
    memory_plan: dict
    threads: int | None


def last_checkpoint(run: RunDirectory, config: TrainConfig) -> Path:
    return Path(config.checkpoint_dir or run.file(CHECKPOINTS)) / LAST_CHECKPOINT


def prepare_resume(run_path: str, given: dict[str, Any]) -> tuple[TrainConfig, Resume]:
    """The run's own config (with the harmless ``given`` flags applied) and where to resume it from.

    ``given`` holds the flags set on the command line or in a ``--config`` file. Refuses,
    in one line, a run that is missing, complete, still running or has no checkpoint,
    and flags that would change the run.
    """
    run = RunDirectory(run_path)
    if not run.path.is_dir():
        raise GlueboxError(f"cannot resume {run_path}: no such run directory")
    if not run.file(CONFIG).exists():
        raise GlueboxError(f"cannot resume {run_path}: it is not a gluebox run directory (no {CONFIG})")
    status = run.status() or {}
    if status.get("status") == "complete":
        raise GlueboxError(f"cannot resume {run_path}: the run is complete; start a new run with another --output_dir")
    pid = status.get("pid")
    if status.get("status") == "running" and isinstance(pid, int) and is_gluebox_process(pid):
        raise GlueboxError(f"cannot resume {run_path}: it is still running (process {pid}); stop it first")

    saved = run.read_config()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(saved) - names)
    if unknown:
        raise GlueboxError(f"cannot resume {run_path}: {CONFIG} has settings this gluebox does not know ({', '.join(unknown)})")
    config = TrainConfig(**saved)
    _check_given(run, saved, given)
    checkpoint = last_checkpoint(run, config)
    if not checkpoint.is_file():
        raise GlueboxError(
            f"cannot resume {run_path}: no checkpoint at {checkpoint} (the run stopped before saving one); "
            "start it again with --overwrite"
        )
    for name in RESUMABLE_FLAGS & set(given):
        setattr(config, name, given[name])
    config.overwrite = False
    config.output_dir = str(run.path)
    if last_checkpoint(run, config) != checkpoint:
        check_checkpoint_dir(last_checkpoint(run, config).parent)
    plan = run.read_json(MEMORY_PLAN)
    try:
        MemoryPlan(**plan)
    except TypeError:
        raise GlueboxError(f"cannot resume {run_path}: {MEMORY_PLAN} is missing or not one gluebox wrote") from None
    environment = run.read_json(ENVIRONMENT) or {}
    threads = environment.get("torch_threads") if config.num_threads is None else config.num_threads
    return config, Resume(run, checkpoint, plan, threads if isinstance(threads, int) else None)


def _check_given(run: RunDirectory, saved: dict, given: dict[str, Any]) -> None:
    """Refuse flags that would make the resumed run differ from the run that was started.

    Values are compared as the run saved them, after the same normalisation (``--text_pair_column
    none`` is saved as no column).
    """
    if given.get("overwrite"):
        raise GlueboxError("--resume continues a run and --overwrite replaces one; use one of them")
    if given.get("output_dir") is not None and Path(given["output_dir"]).resolve() != run.path.resolve():
        raise GlueboxError(
            f"--resume continues {run.path} in place; drop --output_dir (copy the folder first to keep the original)"
        )
    maths = {name: value for name, value in given.items() if name not in RESUMABLE_FLAGS | {"overwrite", "output_dir"}}
    candidate = TrainConfig(**(saved | maths)).validate()
    for name, value in maths.items():
        if getattr(candidate, name) != saved.get(name):
            had = saved.get(name) if saved.get(name) is not None else "the default"
            raise GlueboxError(
                f"--resume continues {run.path} with the settings in its {CONFIG}; --{name} {value} would change "
                f"the run (it has {had}); drop the flag, or start a new run to change it"
            )


def is_gluebox_process(pid: int) -> bool:
    """True if ``pid`` is another live process running gluebox (a run still in progress)."""
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"gluebox" in cmdline
