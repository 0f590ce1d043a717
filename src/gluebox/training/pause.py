"""A pause for tests that signal or kill a run: they wait for a state the run reports, never a time.

``GLUEBOX_PAUSE_AT_STEPS=3,5`` with ``GLUEBOX_PAUSE_DIR=DIR`` makes a training run hold after
each of those optimizer steps (after the step's rows are recorded, before the checkpoint
decision of that step) and say so by writing ``DIR/paused-at-step-N``. It holds until that
file is removed (the run goes on) or a stop signal arrives (the run stops as it would at any
batch end). A test sends its signal, or SIGKILL, while the run holds at a known step, so the
outcome never depends on how fast the machine is. Unset, nothing happens.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from gluebox.training.signals import StopRequest

STEPS_VARIABLE = "GLUEBOX_PAUSE_AT_STEPS"
FOLDER_VARIABLE = "GLUEBOX_PAUSE_DIR"


def marker(folder: str | Path, step: int) -> Path:
    """The file a run holding after ``step`` writes into ``folder``."""
    return Path(folder) / f"paused-at-step-{step}"


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
        self.steps.discard(step)
        path = marker(self.folder, step)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, path)
        while path.exists() and not stop.requested:
            time.sleep(0.005)
