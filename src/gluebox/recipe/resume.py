"""``gluebox train --resume RUN_DIR``: which runs can be resumed, and what a resumed run keeps.

A resumed run takes every setting from ``RUN_DIR/config.yaml`` (the flags it may change are
marked ``resumable`` in :mod:`gluebox.config`), its memory plan from ``memory_plan.json``,
its task from ``task.json`` and its thread count from ``environment.json``, so that it
finishes exactly as the uninterrupted run would have (``gluebox compare`` finds them
identical). What it cannot take along (the data files, the software, the machine) is compared
with what the run last ran with (:func:`check_unchanged`): a difference that changes the results
stops the resume, unless ``--accept_changes`` says to go on.

In a multi-process run, the process that will be rank 0 checks the run (whether it is still
running, and what changed); the others, started by a launcher beside it, take its word.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gluebox.config import TrainConfig, resume_config
from gluebox.errors import GlueboxError
from gluebox.runs.directory import CONFIG, ENVIRONMENT, MEMORY_PLAN, TASK, RunDirectory
from gluebox.runs.environment import changes, last_session
from gluebox.training.checkpoints import LAST, check_checkpoint_dir, check_owner, checkpoint_folder
from gluebox.training.distributed import launcher_rank
from gluebox.training.memory import MemoryPlan


@dataclass
class Resume:
    """An unfinished run to continue, and what it keeps from its first start."""

    run: RunDirectory
    checkpoint: Path
    """The ``last.ckpt`` to continue from (in the checkpoint folder the run used so far)."""
    memory_plan: MemoryPlan
    task: dict
    """``task.json``: the data must still give these labels and columns."""
    threads: int | None
    environment: dict
    """``environment.json`` as the run left it (:mod:`gluebox.runs.environment`)."""
    accept_changes: bool = False
    """``--accept_changes``: go on despite changes that alter the results (and record them)."""


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
    saved = run.read_config()
    pid = status.get("pid")
    if status.get("status") == "running" and isinstance(pid, int) and is_gluebox_process(pid) \
            and launcher_rank(int(saved.get("devices") or 1)) == 0:  # the others: rank 0 of this resume runs it
        raise GlueboxError(f"cannot resume {run_path}: it is still running (process {pid}); stop it first")

    config = resume_config(saved, given, run.path)
    checkpoint = checkpoint_folder(run.path, saved.get("checkpoint_dir")) / LAST
    if not checkpoint.is_file():
        raise GlueboxError(
            f"cannot resume {run_path}: no checkpoint at {checkpoint} (the run stopped before saving one); "
            "start it again with --overwrite"
        )
    check_owner(checkpoint, run)
    if checkpoint_folder(run.path, config.checkpoint_dir) != checkpoint.parent:
        check_checkpoint_dir(checkpoint_folder(run.path, config.checkpoint_dir))
    try:
        plan = MemoryPlan(**run.read_json(MEMORY_PLAN))
    except TypeError:
        raise GlueboxError(f"cannot resume {run_path}: {MEMORY_PLAN} is missing or not one gluebox wrote") from None
    environment = run.read_json(ENVIRONMENT) or {}
    threads = environment.get("torch_threads") if config.num_threads is None else config.num_threads
    accept_changes, config.accept_changes = config.accept_changes, False  # config.yaml never keeps it
    return config, Resume(run, checkpoint, plan, run.read_json(TASK), threads if isinstance(threads, int) else None,
                          environment, accept_changes)


def check_unchanged(resume: Resume, now: dict, reproducibility: str) -> list[str]:
    """What changed since the run last ran that changes its results (see
    :func:`gluebox.runs.environment.changes`): a one-line refusal naming it, or, with ``--accept_changes``,
    the list, for environment.json."""
    found = changes(last_session(resume.environment), now, reproducibility)
    if found and not resume.accept_changes:
        raise GlueboxError(
            f"cannot resume {resume.run.path}: {'; '.join(found)} since the run last ran, so it would not end as an "
            "uninterrupted run would; pass --accept_changes to resume anyway (environment.json records the change)"
        )
    return found


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
