"""Every checkpoint fact: names and folder, atomic IO, when ``last`` and ``best`` are saved,
what a checkpoint holds, and how its weights are loaded back for evaluate and predict.

Two files, in ``--checkpoint_dir`` (default ``RUN/checkpoints``):

- ``last.ckpt``: everything ``--resume`` needs;
- ``best.ckpt``: the weights of the validation with the best monitored metric so far (the main
  metric, or ``--metric_for_best``; ``best_model/``, the Hugging Face export, is written at the same moment).

When ``last.ckpt`` is saved:

- after a training batch, every ``--checkpoint_every_n_steps`` optimizer steps and/or every
  ``--checkpoint_every_minutes`` minutes of wall time (default: 5 minutes);
- at the end of every epoch, and at the run's last step, after validation;
- after the batch during which SIGINT or SIGTERM arrived; then the run stops.

A checkpoint holds everything a resumed run needs to continue bit for bit: weights,
optimizer and schedule, the step and epoch (``global_step``, ``epoch``), the position in the
epoch's batch order, the random generators and the recorders' file positions (the ``state``
of :func:`gluebox.training.loop.fit`, saved with ``fabric.save``). Where it was taken does not
change the results.

Both also hold ``run``: the id in the run directory's marker (:mod:`gluebox.runs.folders`) and
the folder's path, so that a run never resumes from another run's checkpoint (two runs given
the same ``--checkpoint_dir`` with ``--overwrite`` replace each other's ``last.ckpt``).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from gluebox.errors import GlueboxError, RunInterrupted
from gluebox.tasks import Monitor, is_better  # noqa: F401 - is_better: where it was
from gluebox.training.pause import Pause
from gluebox.runs.directory import CHECKPOINTS, RunDirectory, atomic_write, disk_full_is_an_error
from gluebox.runs.folders import run_id
from gluebox.training.distributed import agreed_signal
from gluebox.training.export import export_best
from gluebox.training.signals import StopRequest

FOLDER = CHECKPOINTS
"""The default checkpoint folder inside a run directory."""
LAST = "last.ckpt"
BEST = "best.ckpt"


def checkpoint_folder(run_path: str | Path, checkpoint_dir: str | None) -> Path:
    """Where a run's checkpoints go: ``--checkpoint_dir``, else ``RUN/checkpoints``."""
    return Path(checkpoint_dir) if checkpoint_dir else Path(run_path) / FOLDER


def check_checkpoint_dir(checkpoint_dir: str | Path) -> None:
    """A ``--checkpoint_dir`` must not hold another run's checkpoints (they would be replaced)."""
    taken = [name for name in (LAST, BEST) if (Path(checkpoint_dir) / name).exists()]
    if taken:
        raise GlueboxError(
            f"--checkpoint_dir {checkpoint_dir} already holds {taken[0]} of another run; "
            "choose another --checkpoint_dir or pass --overwrite"
        )


def check_owner(checkpoint: Path, run: RunDirectory) -> None:
    """A one-line error unless ``checkpoint`` was written by ``run`` (same run id): a run never continues
    from another run's checkpoint.

    A checkpoint without an id (saved by an earlier gluebox) passes; so does one whose run has no
    id yet (made by an earlier gluebox: it gets one when it is resumed).
    """
    owner = checkpoint_owner(checkpoint)
    expected = run_id(run.path)
    if owner is None or owner.get("id") is None or owner.get("id") == expected:
        return
    other = f"another run ({owner['path']})" if owner.get("path") else "another run"
    raise GlueboxError(
        f"cannot resume {run.path}: its checkpoint {checkpoint} belongs to {other}, which shared its "
        f"--checkpoint_dir and replaced it; start {run.path} again with --overwrite"
    )


def checkpoint_owner(path: str | Path) -> dict | None:
    """The ``run`` a checkpoint says it belongs to (its id and folder), read without loading its tensors;
    None for a checkpoint from before gluebox wrote one."""
    checkpoint = _mapped(path)
    owner = checkpoint.get("run") if isinstance(checkpoint, dict) else None
    return owner if isinstance(owner, dict) else None


def _mapped(path: str | Path) -> Any:
    """A checkpoint memory-mapped (its tensors are not read); a missing or unreadable file is one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise GlueboxError(f"checkpoint {path} does not exist") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise GlueboxError(f"checkpoint {path} cannot be read ({reason})") from None


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a checkpoint was taken at."""
    return read_checkpoint(path)["global_step"]


def checkpoint_keys(path: str | Path) -> set[str]:
    """The names of what a checkpoint holds (``model``, ``global_step``...), read without loading its tensors."""
    checkpoint = _mapped(path)
    return set(checkpoint) if isinstance(checkpoint, dict) else set()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents (tensors on the CPU); a missing or unreadable file is one line."""
    return AtomicCheckpointIO().load_checkpoint(path, map_location="cpu", weights_only=True)


def load_weights(model, path: str | Path) -> None:
    """Put a checkpoint's model weights (``last`` or ``best``) into a Hugging Face ``model``.

    Checkpoints of gluebox's Lightning Trainer (before the Fabric loop) kept them under
    ``state_dict`` with a ``model.`` prefix; those load too.
    """
    checkpoint = read_checkpoint(path)
    if "model" not in checkpoint:
        checkpoint["model"] = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()
                               if k.startswith("model.")}
    model.load_state_dict(checkpoint["model"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint to a temporary file beside it, fsyncs it, then renames it into place.

    A kill or a full disk during a save leaves the previous checkpoint intact under its
    name; a full disk is a one-line error. Fabric's strategy saves through it (rank 0 writes).
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)

        def write(file) -> None:
            recorder = _WriteErrors(file)
            try:
                torch.save(checkpoint, recorder)
            except RuntimeError:
                if recorder.error is not None:
                    raise recorder.error from None
                raise

        with disk_full_is_an_error(path, "the previous checkpoint is kept"):
            atomic_write(path, write)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise GlueboxError(f"checkpoint {path} does not exist") from None
        except (RuntimeError, EOFError, OSError, ValueError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise GlueboxError(f"checkpoint {path} cannot be read ({reason})") from None


class _WriteErrors:
    """A file for ``torch.save`` that keeps the ``OSError`` of a failed write.

    torch's zip writer turns it into a ``RuntimeError`` ("unexpected pos ...") that no longer
    says why; with the original error, a full disk can be told from a bug.
    """

    def __init__(self, file):
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


class RandomState:
    """The global random generators, saved with each checkpoint and put back on resume.

    gluebox's dropout masks are a pure function of the seed, rank and step (:mod:`gluebox.training.dropout`)
    and need no state; what else draws from these generators (PyTorch's dropout stream under
    ``GLUEBOX_DROPOUT_GENERATOR=torch``, a family's own random draws) continues exactly where the
    checkpoint was taken. :func:`~gluebox.training.loop.fit` loads the checkpoint
    after everything is set up, so nothing draws from these generators between the restore
    and the next training step. With several processes, every process's state is kept.
    """

    def __init__(self, rank: int = 0, world_size: int = 1):
        self.rank, self.world_size = rank, world_size

    def state_dict(self) -> dict:
        state = self._local_state()
        if self.world_size == 1:
            return state
        from gluebox.training.distributed import all_gather_objects

        return {"per_rank": all_gather_objects(state)}

    @staticmethod
    def _local_state() -> dict:
        numpy_state = np.random.get_state()
        version, python_state, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"key": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                      "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
            "python": {"version": version, "state": list(python_state), "gauss": gauss},
        }

    def load_state_dict(self, state: dict) -> None:
        if "per_rank" in state:
            state = state["per_rank"][self.rank]
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        numpy_state = state["numpy"]
        np.random.set_state(("MT19937", numpy_state["key"].numpy().astype(np.uint32), numpy_state["pos"],
                             numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
        python_state = state["python"]
        random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))


class Checkpoints:
    """When ``last.ckpt`` and ``best.ckpt`` are saved, and a stop signal turned into a checkpoint
    and :class:`RunInterrupted`. The loop calls it after each step's rows are recorded and after
    each epoch's record is written, so a checkpoint always has its rows on disk.

    The best value so far is kept in ``last.ckpt``, so a resumed run (even one whose folder was
    moved) only replaces the best checkpoint and model with a better epoch.
    """

    def __init__(self, checkpoint_dir: str | Path | None, run: RunDirectory, tokenizer, monitor: Monitor,
                 every_n_steps: int | None, every_minutes: float | None, stop: StopRequest,
                 model_card: Callable[[dict, int], str] | None = None):
        self.checkpoint_dir = checkpoint_dir
        self.run = run
        self.tokenizer = tokenizer
        self.monitor = monitor
        self.every_n_steps = every_n_steps or None
        self.every_seconds = every_minutes * 60 if every_minutes else None
        self.stop = stop
        self.model_card = model_card
        """``best_model/README.md`` from the epoch's validation results and the epoch (1-based)."""
        self.pause = Pause.from_environment()
        self.budget = None
        """The run's :class:`~gluebox.training.budget.TimeBudget` (``--time_budget``): it learns how long a save takes."""
        self.step = 0
        """The last optimizer step the loop finished."""
        self._saved_step = 0
        self._saved_at = time.monotonic()

    @property
    def folder(self) -> Path:
        """``--checkpoint_dir``, else the run's ``checkpoints/`` (where rank 0's run directory is, once
        the processes agreed on it)."""
        return checkpoint_folder(self.run.path, self.checkpoint_dir)

    @property
    def path(self) -> Path:
        """``last.ckpt``."""
        return self.folder / LAST

    def owner(self, fabric) -> dict | None:
        """The ``run`` every checkpoint holds: the run's id and folder (rank 0 writes it; others pass None)."""
        if not fabric.is_global_zero:
            return None
        return {"id": run_id(self.run.path), "path": str(self.run.path.resolve())}

    def start(self, step: int) -> None:
        self.step = self._saved_step = step
        self._saved_at = time.monotonic()

    def after_step(self, fabric, state: dict, end_of_epoch: bool) -> None:
        """The test hook's hold; then, but at an epoch's end or the run's (whose checkpoint follows,
        :meth:`after_epoch`), save if due or asked to stop, and stop."""
        self.step = state["global_step"]
        if self.pause is not None:
            self.pause.after_step(self.step, self.stop)
        if end_of_epoch:
            return
        signum = agreed_signal(fabric, self.stop.signum)
        if signum or any_process(fabric, self._due()):
            self.save(fabric, state)
        if signum:
            self.interrupt(state["epoch"] + 1, self.step, signum)

    def after_epoch(self, fabric, state: dict) -> None:
        """Save ``last.ckpt`` at an epoch's end (``state["epoch"]`` epochs are complete) or the run's
        (``state["finished"]``); stop if asked to, unless the run is complete."""
        self.save(fabric, state)
        signum = agreed_signal(fabric, self.stop.signum)
        if signum and not state["finished"]:
            self.interrupt(state["epoch"], state["global_step"], signum)

    def _due(self) -> bool:
        if self.every_n_steps and self.step - self._saved_step >= self.every_n_steps:
            return True
        return bool(self.every_seconds and time.monotonic() - self._saved_at >= self.every_seconds)

    def save_if_best(self, fabric, state: dict, validation: dict) -> None:
        """``best.ckpt`` (weights) and ``best_model/`` (LoRA: and ``best_adapter/``) when the monitored
        metric improved.

        A NaN metric is never the best; while no epoch had a number, each epoch's model is
        exported anyway (so a run always has a ``best_model/``), and the first epoch with a
        number replaces it. ``summary.json`` says which epochs were NaN.
        """
        value = validation.get(self.monitor.key)
        best = state["best"] if state["best"] is None or not math.isnan(state["best"]) else None
        standing_in = best is None and value is not None and math.isnan(value)
        if not (self.monitor.is_better(value, best) or standing_in):
            return
        fabric.save(self.folder / BEST, {"model": state["model"], "global_step": state["global_step"],
                                         "run": self.owner(fabric)})
        if fabric.is_global_zero:
            card = self.model_card(validation, state["epoch"] + 1) if self.model_card is not None else None
            export_best(state["model"].module, self.tokenizer, self.run, card)
        state["best"] = None if standing_in else value

    def save(self, fabric, state: dict) -> None:
        started = self.budget.clock.now() if self.budget is not None else None
        fabric.save(self.path, state | {"run": self.owner(fabric)})  # every process takes part; rank 0 writes
        if self.budget is not None:
            self.budget.saved(self.budget.clock.now() - started)
        self._saved_step = state["global_step"]
        self._saved_at = time.monotonic()

    def interrupt(self, epoch: int, step: int, signum: int) -> None:
        """Stop every process after the checkpoint of ``step``, with the signal one of them got."""
        import signal

        raise RunInterrupted(
            f"{signal.Signals(signum).name} at epoch {epoch}, step {step}; "
            f"checkpoint saved to {self.path}",
            signum, every_process=True,
        )


def any_process(fabric, decision: bool) -> bool:
    """True if any process decided so: every process must save, and stop, at the same step."""
    if fabric.world_size == 1:
        return decision
    return fabric.strategy.reduce_boolean_decision(decision, all=False)
