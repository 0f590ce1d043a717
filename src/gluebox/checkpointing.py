"""``checkpoints/last.ckpt``: saved often enough that an interruption loses little, and on a stop signal.

When it is saved:

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

import time
from pathlib import Path

from lightning.pytorch.callbacks import Checkpoint

from gluebox.errors import RunInterrupted
from gluebox.signals import StopRequest


class LastCheckpoint(Checkpoint):
    """Keeps ``last.ckpt`` fresh and turns a stop signal into a checkpoint and :class:`RunInterrupted`.

    It is a :class:`Checkpoint` so that Lightning runs it after the other callbacks: the
    recorders have written the batch's or epoch's rows when it saves.
    """

    def __init__(self, path: Path, every_n_steps: int | None, every_minutes: float | None, stop: StopRequest):
        self.path = Path(path)
        self.every_n_steps = every_n_steps or None
        self.every_seconds = every_minutes * 60 if every_minutes else None
        self.stop = stop
        self._saved_step = 0
        self._saved_at = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self.stop.install()  # after Lightning's own SIGTERM handler (see gluebox.signals)
        self._saved_step = trainer.global_step
        self._saved_at = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch-end checkpoint follows validation
        if self.stop.requested or self._due(trainer):
            self.save(trainer)
        if self.stop.requested:
            self._stop(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self.save(trainer)
        if self.stop.requested and trainer.current_epoch + 1 < trainer.max_epochs:
            self._stop(trainer)

    def _due(self, trainer) -> bool:
        if self.every_n_steps and trainer.global_step - self._saved_step >= self.every_n_steps:
            return True
        return bool(self.every_seconds and time.monotonic() - self._saved_at >= self.every_seconds)

    def save(self, trainer) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_step = trainer.global_step
        self._saved_at = time.monotonic()

    def _stop(self, trainer) -> None:
        raise RunInterrupted(
            f"{self.stop.name} at epoch {trainer.current_epoch + 1}, step {trainer.global_step}; "
            f"checkpoint saved to {self.path}",
            self.stop.signum,
        )
