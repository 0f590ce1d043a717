"""Run the suite's tasks: one after another in this process, or in parallel as Ray tasks (``--address``).

Each task is the normal training recipe (:func:`gluebox.recipe.train.train`) writing a normal
run directory, then its test predictions (:mod:`gluebox.recipe.evaluation`) in the
leaderboard's format. What a task's run directory holds decides what happens to it:

- ``complete`` (status and ``summary.json``): skipped; only missing predictions are made;
- an unfinished run with ``last.ckpt``: resumed, with ``gluebox train --resume``'s rules;
- an unfinished run without a checkpoint: started again;
- nothing yet: started.

A task that fails is recorded in ``progress.json`` with its error, and the others go on. A stop
signal (SIGINT, SIGTERM) stops the task in progress at its next batch end with a checkpoint,
as ``gluebox train`` does, and then the suite: ``gluebox glue --resume SUITE`` goes on from there.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from gluebox.errors import GlueboxError, RunInterrupted
from gluebox.runs.directory import SUMMARY, RunDirectory
from gluebox.suite.plan import SuitePlan, duration
from gluebox.suite.spec import RESUMABLE, Suite
from gluebox.suite.submission import files_of, write_predictions
from gluebox.tasks import GLUE_TASKS

RAY_HINT = "gluebox glue --address needs Ray: pip install 'gluebox[sweep]'"


def run_state(run_path: Path) -> str:
    """``new``, ``complete``, ``resume`` (unfinished, with a checkpoint) or ``restart`` (unfinished, none)."""
    from gluebox.training.checkpoints import LAST, checkpoint_folder

    run = RunDirectory(run_path)
    if not run.path.is_dir() or not any(run.path.iterdir()):
        return "new"
    status = run.status() or {}
    if status.get("status") == "complete" and run.file(SUMMARY).is_file():
        return "complete"
    return "resume" if (checkpoint_folder(run.path, None) / LAST).is_file() else "restart"


def predict_task(run_path: Path, task: str, folder: Path, ax: bool) -> list[str]:
    """Write the test predictions of a complete run: the task's files (and AX with MNLI's run)."""
    from gluebox.data.sources import load_split
    from gluebox.recipe.evaluation import load_run, predictions

    loaded = load_run(str(run_path))
    written = []
    for file in files_of(task):
        if file.task == "ax" and not ax:
            continue
        config = type(loaded.config)(**(loaded.config.to_dict() | {"task_name": file.task}))
        examples = load_split(config, GLUE_TASKS[file.task], file.split)
        values = predictions(loaded, examples, None)
        write_predictions(folder, file, examples.ids, values)
        written.append(file.name)
    return written


def run_task(values: dict[str, Any], task: str, predictions: str, ax: bool, callbacks=()) -> dict[str, Any]:
    """Train (or resume, or skip) one task's run, then write its predictions; its outcome.

    Raises :class:`RunInterrupted` when a stop signal stopped the run (it is then resumable).
    """
    from gluebox.config import TrainConfig
    from gluebox.recipe.train import train

    started = time.time()
    config = TrainConfig(**values)
    run_path = Path(config.output_dir)
    folder = Path(predictions)
    state = run_state(run_path)
    if state != "complete":
        for file in files_of(task):  # predictions of an earlier attempt no longer belong to this run
            (folder / file.name).unlink(missing_ok=True)
    if state == "resume":
        from gluebox.recipe.resume import prepare_resume

        config, resume = prepare_resume(str(run_path), {k: v for k, v in values.items() if k in RESUMABLE})
        train(config, resume, callbacks=callbacks)
    elif state in ("new", "restart"):
        config.overwrite = state == "restart"
        train(config, callbacks=callbacks)
    missing = [f for f in files_of(task) if not (folder / f.name).is_file() and (ax or f.task != "ax")]
    written = predict_task(run_path, task, folder, ax) if missing else []
    return {"status": "complete", "state": state, "seconds": round(time.time() - started, 3),
            "run_dir": str(run_path), "predictions": written}


def attempt_task(values: dict[str, Any], task: str, predictions: str, ax: bool, callbacks=(),
                 raise_interrupt: bool = True) -> dict[str, Any]:
    """:func:`run_task`, with a failure turned into a ``failed`` outcome (the suite goes on)."""
    started = time.time()
    try:
        return run_task(values, task, predictions, ax, callbacks)
    except RunInterrupted as interruption:
        if raise_interrupt:
            raise
        return {"status": "interrupted", "error": str(interruption), "seconds": round(time.time() - started, 3),
                "run_dir": values["output_dir"]}
    except GlueboxError as error:
        message = str(error)
        details = None
    except Exception as error:  # noqa: BLE001 - a task's bug must not stop the other tasks
        message = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        details = traceback.format_exc()
    outcome = {"status": "failed", "error": message, "seconds": round(time.time() - started, 3),
               "run_dir": values["output_dir"]}
    if details:
        outcome["traceback"] = details
    return outcome


class SignalRelay:
    """A training-loop callback: a stop signal the suite caught before the run took over its signals
    (while the run was loading data) is sent again once the run's own handler is in place, so the
    run stops at its first batch end with a checkpoint."""

    def __init__(self, stop):
        self.stop = stop

    def on_train_epoch_start(self, epoch: int) -> None:
        if self.stop.requested:
            os.kill(os.getpid(), self.stop.signum)


class Progress:
    """``glue: [3/9] mrpc ...``: tasks done and left, and the time left (scaled by measured speed)."""

    def __init__(self, suite: Suite, plan: SuitePlan):
        self.suite = suite
        self.estimates = {t.task: t.seconds for t in plan.tasks if t.state != "complete"}
        self.measured = 0.0
        self.estimated = 0.0
        self.done: list[str] = []

    def left(self) -> str:
        pending = [t for t in self.estimates if t not in self.done]
        seconds = sum(self.estimates[t] for t in pending)
        if self.estimated > 0 and self.measured > 0:
            seconds *= self.measured / self.estimated
        return f"{len(pending)} left, about {duration(seconds)}" if pending else "none left"

    def start(self, task: str) -> None:
        number = self.suite.tasks.index(task) + 1
        print(f"glue: [{number}/{len(self.suite.tasks)}] {task}: starting ({len(self.done)} done, {self.left()})",
              flush=True)

    def finish(self, task: str, outcome: dict[str, Any]) -> None:
        if task in self.estimates and outcome.get("state") not in ("complete", None):
            self.measured += outcome.get("seconds", 0.0)
            self.estimated += self.estimates[task]
        self.done.append(task)
        what = {"complete": f"complete in {duration(outcome.get('seconds', 0.0))}"
                            + (" (already complete: skipped)" if outcome.get("state") == "complete" else ""),
                "failed": f"FAILED: {outcome.get('error')}",
                "interrupted": f"interrupted: {outcome.get('error')}"}[outcome["status"]]
        print(f"glue: {task} {what} ({len(self.done)}/{len(self.suite.tasks)} done, {self.left()})", flush=True)


def run_local(suite: Suite, plan: SuitePlan) -> dict[str, dict[str, Any]]:
    """Every task, one after another in this process; a stop signal stops the suite cleanly."""
    from gluebox.training.signals import StopRequest

    stop = StopRequest()
    stop.install()
    relay = SignalRelay(stop)
    progress = Progress(suite, plan)
    outcomes: dict[str, dict[str, Any]] = {}
    try:
        for task in suite.tasks:
            if stop.requested:
                raise RunInterrupted(f"stopped by {stop.name} before {task}", stop.signum)
            progress.start(task)
            try:
                outcome = attempt_task(suite.configs[task], task, str(suite.predictions), suite.ax, [relay])
            except RunInterrupted as interruption:
                suite.record(task, status="interrupted", error=str(interruption), run_dir=suite.configs[task]["output_dir"])
                raise
            outcomes[task] = outcome
            suite.record(task, **outcome)
            progress.finish(task, outcome)
        if stop.requested:
            raise RunInterrupted(f"stopped by {stop.name}", stop.signum)
    finally:
        stop.uninstall()
    return outcomes


def run_on_ray(suite: Suite, plan: SuitePlan, address: str, cpus_per_task: float,
               gpus_per_task: float) -> dict[str, dict[str, Any]]:
    """Every task at once as a Ray task on the cluster at ``address``, each with its own CPUs and GPUs.

    The suite's folder, data and model must be at the same paths on every node (a shared
    filesystem), as for ``gluebox sweep``.
    """
    from gluebox.sweep.cluster import connect, import_ray

    ray = import_ray(local=False, install_hint=RAY_HINT)
    started_here = connect(ray, address)
    progress = Progress(suite, plan)
    outcomes: dict[str, dict[str, Any]] = {}
    remote = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)(attempt_task)
    pending = {}
    try:
        for task in suite.tasks:
            values = dict(suite.configs[task])
            if values.get("num_threads") is None:
                values["num_threads"] = max(1, int(cpus_per_task))
            values["progress_bar"] = False
            progress.start(task)
            pending[remote.remote(values, task, str(suite.predictions), suite.ax, (), False)] = task
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as error:  # noqa: BLE001 - the worker died (out of memory, node lost)
                    outcome = {"status": "failed", "error": f"the Ray task ended: {str(error).strip().splitlines()[-1][:300]}",
                               "run_dir": suite.configs[task]["output_dir"]}
                outcomes[task] = outcome
                suite.record(task, **outcome)
                progress.finish(task, outcome)
    except KeyboardInterrupt:
        # Ray's cancel raises KeyboardInterrupt in each running task, which a run takes as SIGINT:
        # it saves last.ckpt and ends interrupted, resumable with `gluebox glue --resume`.
        for ref in pending:
            ray.cancel(ref)
        ray.wait(list(pending), num_returns=len(pending), timeout=120)
        raise RunInterrupted("stopped by SIGINT; the running tasks were cancelled", signal.SIGINT) from None
    finally:
        if started_here:
            ray.shutdown()
    return outcomes
