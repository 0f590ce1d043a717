"""When the training loop validates and when it ends.

- The planned last step: ``--epochs`` worth of steps, or ``--max_steps``, or what fits ``--time_budget``
  (:mod:`gluebox.training.budget` plans it after the first steps); the learning-rate schedule ends there.
- Validation: at every epoch's end, or every ``--eval_every_n_steps`` optimizer steps instead; and always
  after the last step, so that every run ends with one.
- Early stopping (``--early_stopping_patience``): the run ends after that many validations in a row
  without an improvement of the monitored metric by more than ``--early_stopping_min_delta``.

Nothing here draws random numbers or reads a clock: where a run stops depends on its results only.
"""

from __future__ import annotations

from dataclasses import dataclass

from gluebox.tasks import Monitor


def validation_due(step: int, end_of_epoch: bool, last_step: bool, every_n_steps: int | None) -> bool:
    """Whether to validate after optimizer ``step`` (1-based, counted over the whole run)."""
    if last_step:
        return True
    if every_n_steps:
        return step % every_n_steps == 0
    return end_of_epoch


@dataclass
class EarlyStopping:
    """Counts validations without improvement (the count lives in the checkpoint's ``state``)."""

    monitor: Monitor
    patience: int | None
    min_delta: float = 0.0

    def after_validation(self, state: dict, validation: dict) -> str | None:
        """Count this validation against ``state["best"]`` (the best value before it); the reason to stop
        now, or None. Call before the best value is updated."""
        if self.patience is None:
            return None
        value = validation.get(self.monitor.key)
        if self.monitor.is_better(value, state["best"], self.min_delta):
            state["validations_without_improvement"] = 0
            return None
        state["validations_without_improvement"] += 1
        if state["validations_without_improvement"] < self.patience:
            return None
        best = "none" if state["best"] is None else f"{state['best']:.4f}"
        change = f"by more than {self.min_delta:g}" if self.min_delta else "at all"
        return (f"early stopping: {self.monitor.key} did not improve {change} in {self.patience} validation(s) "
                f"in a row (best {best}; --early_stopping_patience {self.patience})")
