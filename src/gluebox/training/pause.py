"""A pause for tests that signal or kill a run: they wait for a state the run reports, never a time.

``GLUEBOX_PAUSE_AT_STEPS=3,5`` with ``GLUEBOX_PAUSE_DIR=DIR`` makes a training run hold after
each of those optimizer steps (after the step's rows are recorded, before the checkpoint
decision of that step). Every process of the run holds, and each says so by writing
``DIR/paused-at-step-N-rank-R`` (its global rank R) holding its process id, so that a test can
signal any rank. The run holds until every rank's file of that step is removed (the run goes
on), or until any rank gets a stop signal (every rank then stops as it would at any batch end).
A test sends its signal, or SIGKILL, while the run holds at a known step, so the outcome never
depends on how fast the machine is. Unset, nothing happens.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from gluebox.training.signals import StopRequest

STEPS_VARIABLE = "GLUEBOX_PAUSE_AT_STEPS"
FOLDER_VARIABLE = "GLUEBOX_PAUSE_DIR"


def marker(folder: str | Path, step: int, rank: int = 0) -> Path:
    """The file that rank ``rank`` of a run holding after ``step`` writes into ``folder``."""
    return Path(folder) / f"paused-at-step-{step}-rank-{rank}"


def held_pid(folder: str | Path, step: int, rank: int = 0) -> int:
    """The process id of rank ``rank``, from its marker of ``step``."""
    return int(marker(folder, step, rank).read_text())


def release(folder: str | Path, step: int) -> None:
    """Let every rank holding after ``step`` go on."""
    for path in Path(folder).glob(f"paused-at-step-{step}-rank-*"):
        path.unlink(missing_ok=True)


class Pause:
    """Holds the run after the optimizer steps named in the environment."""

    def __init__(self, steps: set[int], folder: Path):
        self.steps = steps
        self.folder = folder

    @classmethod
    def from_environment(cls) -> "Pause | None":
        steps = os.environ.get(STEPS_VARIABLE, "").strip()
        folder = os.environ.get(FOLDER_VARIABLE)
        if not steps or not folder:
            return None
        return cls({int(step) for step in steps.split(",") if step.strip()}, Path(folder))

    def after_step(self, step: int, stop: StopRequest) -> None:
        """If ``step`` is one to hold at: report it, then hold until released or asked to stop."""
        if step not in self.steps:
            return
        from gluebox.data.sharding import rank_and_world_size

        self.steps.discard(step)
        rank, world_size = rank_and_world_size()
        path = marker(self.folder, step, rank)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, path)
        while True:
            stopping, held = stop.requested, path.exists()
            if world_size > 1:  # every rank leaves the hold together, at the same step
                stopping, held = _any_rank(stopping, held)
            if stopping or not held:
                return
            time.sleep(0.005)


def _any_rank(*flags: bool) -> tuple[bool, ...]:
    """Each flag, true if it is true in any process (the processes call this in step)."""
    import torch

    values = torch.tensor([int(flag) for flag in flags])
    if torch.distributed.get_backend() == "nccl":
        values = values.cuda()
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
    return tuple(bool(value) for value in values.tolist())
