"""Every checkpoint fact: names and folder, atomic IO, when ``last`` and ``best`` are saved,
what a checkpoint holds, and how its weights are loaded back for evaluate and predict.

Two files, in ``--checkpoint_dir`` (default ``RUN/checkpoints``):

- ``last.ckpt``: everything ``--resume`` needs;
- ``best.ckpt``: the weights of the epoch with the best main metric so far (``best_model/``,
  the Hugging Face export, is written at the same moment).

When ``last.ckpt`` is saved:

- after a training batch, every ``--checkpoint_every_n_steps`` optimizer steps and/or every
  ``--checkpoint_every_minutes`` minutes of wall time (default: 5 minutes);
- at the end of every epoch, after validation;
- after the batch during which SIGINT or SIGTERM arrived; then the run stops.

A checkpoint holds everything a resumed run needs to continue bit for bit: weights,
optimizer and schedule, Lightning's loop counters, the position in the epoch's batch
order, the random generators and the recorders' file positions. Where it was taken does
not change the results.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint

from gluebox.errors import GlueboxError, RunInterrupted
from gluebox.training.pause import Pause
from gluebox.runs.directory import BEST_MODEL, RunDirectory, atomic_write, disk_full_is_an_error
from gluebox.training.export import export_hf_model
from gluebox.training.signals import StopRequest

FOLDER = "checkpoints"
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


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a checkpoint was taken at."""
    return read_checkpoint(path)["global_step"]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents (tensors on the CPU); a missing or unreadable file is one line."""
    return AtomicCheckpointIO().load_checkpoint(path, map_location="cpu", weights_only=True)


def load_weights(model, path: str | Path) -> None:
    """Put a checkpoint's model weights (``last`` or ``best``) into a Hugging Face ``model``.

    Lightning keeps the classifier's weights under ``state_dict`` with the ``model.`` prefix of
    :class:`~gluebox.training.classifier.GlueClassifier`'s attribute.
    """
    state = read_checkpoint(path)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint to a temporary file beside it, fsyncs it, then renames it into place.

    A kill or a full disk during a save leaves the previous checkpoint intact under its
    name; a full disk is a one-line error. Saving straight to a file also avoids
    Lightning's in-memory copy of the whole checkpoint.
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


class BatchOrder(L.Callback):
    """Tells the batch sampler which epoch it is, and keeps its place in the epoch in checkpoints.

    Lightning 2.6 does neither for a batch sampler like ours: it calls ``set_epoch`` only on
    ``loader.sampler`` and ``loader.batch_sampler.sampler``, and it restores a loader's
    state only when the loader is set up after the checkpoint is loaded, while the
    schedule's ``estimated_stepping_batches`` sets it up before.
    """

    def __init__(self, sampler):
        self.sampler = sampler

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.sampler.set_epoch(trainer.current_epoch)

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.sampler.load_state_dict(state_dict)


class RandomState(L.Callback):
    """Saves the global random generators with each checkpoint and puts them back on resume.

    Dropout draws from torch's generator, so a resumed run must continue its stream exactly
    where the checkpoint was taken. The state is restored just before the first training
    step after the resume: nothing between a checkpoint and the next step draws from these
    generators (the training loader has a generator of its own), while setting up a resumed
    run does (the new head's random weights).
    """

    def __init__(self):
        self._pending: dict | None = None
        self._rank, self._world_size = 0, 1

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._rank, self._world_size = trainer.global_rank, trainer.world_size

    def state_dict(self) -> dict:
        """This process's generators; with several processes, every process's (each draws its own dropout)."""
        state = self._local_state()
        if self._world_size == 1:
            return state
        from gluebox.training.distributed import all_gather_objects

        return {"per_rank": all_gather_objects(state)}

    def _local_state(self) -> dict:
        numpy_state = np.random.get_state()
        version, python_state, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"key": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                      "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
            "python": {"version": version, "state": list(python_state), "gauss": gauss},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        if "per_rank" in state:
            state = state["per_rank"][self._rank]
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        numpy_state = state["numpy"]
        np.random.set_state(("MT19937", numpy_state["key"].numpy().astype(np.uint32), numpy_state["pos"],
                             numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
        python_state = state["python"]
        random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))


class Checkpoints(Checkpoint):
    """Keeps ``last.ckpt`` fresh, saves ``best.ckpt`` and ``best_model/`` at each new best, and
    turns a stop signal into a checkpoint and :class:`RunInterrupted`.

    It is a :class:`Checkpoint` so that Lightning runs it after the other callbacks (the one
    workaround it needs: Lightning has no other way to order callbacks): the recorders have
    written the batch's or epoch's rows when it saves. The best value so far is kept in
    ``last.ckpt``, so a resumed run (even one whose folder was moved) only replaces the best
    checkpoint and model with a better epoch.
    """

    def __init__(self, folder: Path, run: RunDirectory, tokenizer, monitor: str,
                 every_n_steps: int | None, every_minutes: float | None, stop: StopRequest):
        self.folder = Path(folder)
        self.path = self.folder / LAST
        self.run = run
        self.tokenizer = tokenizer
        self.monitor = monitor
        self.best: float | None = None
        self.every_n_steps = every_n_steps or None
        self.every_seconds = every_minutes * 60 if every_minutes else None
        self.stop = stop
        self.pause = Pause.from_environment()
        self._saved_step = 0
        self._saved_at = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self.stop.install()  # after Lightning's own SIGTERM handler (see gluebox.training.signals)
        self._saved_step = trainer.global_step
        self._saved_at = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.pause is not None:
            self.pause.after_step(trainer.global_step, self.stop)
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch-end checkpoint follows validation
        stop = self._any_process(trainer, self.stop.requested)
        if stop or self._any_process(trainer, self._due(trainer)):
            self.save(trainer)
        if stop:
            self._stop(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self._save_if_best(trainer, pl_module)
        self.save(trainer)
        if self._any_process(trainer, self.stop.requested) and trainer.current_epoch + 1 < trainer.max_epochs:
            self._stop(trainer)

    @staticmethod
    def _any_process(trainer, decision: bool) -> bool:
        """True if any process decided so: every process must save, and stop, at the same step."""
        if trainer.world_size == 1:
            return decision
        return trainer.strategy.reduce_boolean_decision(decision, all=False)

    def _due(self, trainer) -> bool:
        if self.every_n_steps and trainer.global_step - self._saved_step >= self.every_n_steps:
            return True
        return bool(self.every_seconds and time.monotonic() - self._saved_at >= self.every_seconds)

    def _save_if_best(self, trainer, pl_module) -> None:
        value = pl_module.last_validation.get(self.monitor)
        if value is None or (self.best is not None and not value > self.best):
            return
        trainer.save_checkpoint(self.folder / BEST, weights_only=True)  # every process takes part; rank 0 writes
        if trainer.is_global_zero:
            export_hf_model(pl_module.model, self.tokenizer, self.run.file(BEST_MODEL))
        self.best = value

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best")

    def save(self, trainer) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_step = trainer.global_step
        self._saved_at = time.monotonic()

    def _stop(self, trainer) -> None:
        import signal

        signum = self.stop.signum or signal.SIGTERM  # another process got the signal
        raise RunInterrupted(
            f"{signal.Signals(signum).name} at epoch {trainer.current_epoch + 1}, step {trainer.global_step}; "
            f"checkpoint saved to {self.path}",
            signum,
        )
