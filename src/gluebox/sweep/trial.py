"""One trial of a sweep, as it runs inside a Ray worker: the normal training recipe, reported to Tune.

Each trial calls :func:`gluebox.recipe.train.train` in-process, so it writes a normal,
complete run directory. :class:`TuneReporter` reports each epoch to Tune once that epoch is
fully written (metrics and checkpoints), at the start of the next one; the last epoch is
reported after the run directory is complete, so that a scheduler deciding at that point
cannot cut a finished run short.

When Tune stops a trial (ASHA's early stopping, or the sweep being interrupted), its
``report`` raises ``SystemExit(0)`` in the trial: the reporter marks the run directory
``stopped``, with the reason and the epochs it completed, and ends training there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from gluebox.runs.directory import RunDirectory

STOPPED_BY_SCHEDULER = "stopped early by the sweep's ASHA scheduler (trailing other trials at an epoch milestone)"
STOPPED_BY_TUNE = "stopped by Ray Tune before its last epoch"


def numeric(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of an epoch record (Tune gets no strings)."""
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TuneReporter:
    """Reports each finished epoch's record to Tune; a stop from Tune ends the run as ``stopped``.

    A callback of the training loop (:func:`gluebox.training.loop.make_fabric`)."""

    def __init__(self, report: Callable[[dict], None], run_path: str | Path, reason: str):
        self.report = report
        self.run = RunDirectory(run_path)
        self.reason = reason

    def on_train_epoch_start(self, epoch: int) -> None:
        if epoch == 0:
            return
        records = self.run.metrics()
        try:
            self.report(numeric(records[-1]))
        except SystemExit as stop:
            if stop.code not in (None, 0):
                raise
            from gluebox.errors import RunStopped

            self.run.set_status("stopped", reason=self.reason, epochs_completed=len(records))
            raise RunStopped(f"{self.run.path} was stopped after {len(records)} epoch(s): {self.reason}") from None


def run_trial(tune_config: dict[str, Any], base: dict[str, Any], trials_dir: str, cpus_per_trial: float,
              stop_reason: str = STOPPED_BY_TUNE) -> None:
    """Ray Tune's function for one trial: train, then report the final epoch.

    ``tune_config["trial"]`` holds the trial's ``name`` and sampled ``params``.
    """
    from ray import tune

    from gluebox.errors import RunStopped
    from gluebox.recipe.train import train
    from gluebox.sweep.spec import trial_config

    trial = tune_config["trial"]
    config = trial_config(base, trial["params"], Path(trials_dir) / trial["name"], cpus_per_trial)
    reporter = TuneReporter(tune.report, config.output_dir, stop_reason)
    try:
        run = train(config, callbacks=[reporter])
    except RunStopped:
        return
    last = run.metrics()[-1]
    tune.report(numeric(last))
