"""The training recipe, top to bottom: check, build, open the run directory, fit, summarize.

All checks of the user's input run before the run directory is created, so bad input
never leaves a half-written run behind. A new run and a resumed one differ in one place
each: where the run directory comes from (:func:`check_run_directory`), what :func:`build`
keeps from the first start, and how the run directory is opened (:func:`open_run_directory`).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gluebox.config import TrainConfig, absolute_paths
from gluebox.errors import GlueboxError, RunInterrupted, RunStopped
from gluebox.recipe.build import Recipe, build
from gluebox.runs.directory import (BEST_MODEL, ENVIRONMENT, MEMORY_PLAN, STATUS, SUMMARY, TASK, RunDirectory,
                                    check_writable)
from gluebox.runs.folders import RUN, Claim, check_folder, claim_new_name, new_marker, read_marker, write_marker
from gluebox.runs.folders import claim as claim_folder

if TYPE_CHECKING:
    from gluebox.recipe.resume import Resume


def default_run_name(config: TrainConfig) -> tuple[Path, str]:
    """``$GLUEBOX_RUNS_DIR`` (or ``runs``) and ``<task>-<model>-<yyyymmdd-hhmmss>``: the parent and stem
    of a new run's default folder (claimed with ``-2``, ``-3``... when taken)."""
    parent = Path(os.environ.get("GLUEBOX_RUNS_DIR", "runs"))
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(config.model_name_or_path.rstrip("/")).name) or "model"
    task = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.resolved_task_name) or "task"
    return parent, f"{task}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_directory(config: TrainConfig, resume: "Resume | None", rank: int) -> RunDirectory:
    """The run's directory: the resumed one, or a new one checked (by rank 0) but not claimed yet.

    A new run without ``--output_dir`` gets its name when it is claimed; the other ranks of a
    multi-process run learn it from rank 0 when training starts (:func:`gluebox.training.loop.fit`).
    """
    if resume is not None:
        return resume.run
    from gluebox.training import memory
    from gluebox.training.checkpoints import check_checkpoint_dir

    if config.output_dir is None:
        parent, stem = default_run_name(config)
        run = RunDirectory(parent / stem)
        if rank == 0:
            check_writable(parent)
    else:
        run = RunDirectory(config.output_dir)
        if rank == 0:
            check_folder(run.path, RUN, config.overwrite)
            check_writable(run.path)
            if config.overwrite:
                check_not_running(run)
    if rank == 0 and config.checkpoint_dir is not None and not config.overwrite:
        check_checkpoint_dir(config.checkpoint_dir)
    memory.preflight(config)
    return run


def check_not_running(run: RunDirectory) -> None:
    """``--overwrite`` never replaces a run that a live process is still writing."""
    from gluebox.recipe.resume import is_gluebox_process

    status = run.status() if run.file(STATUS).is_file() else None
    pid = (status or {}).get("pid")
    if (status or {}).get("status") in ("starting", "running") and isinstance(pid, int) and is_gluebox_process(pid):
        raise GlueboxError(f"cannot overwrite {run.path}: it is still running (process {pid}); stop it first")


def claim_run_directory(config: TrainConfig, run: RunDirectory) -> Claim:
    """Claim the new run's folder (rank 0), before the data and model are loaded: it is ``starting``.

    The default name is claimed atomically (``-2``, ``-3``... when taken); ``config.output_dir``
    is set to the folder claimed.
    """
    if config.output_dir is None:
        claim = claim_new_name(run.path.parent, run.path.name, RUN)
        run.path = claim.path
    else:
        claim = claim_folder(run.path, RUN, config.overwrite)
    config.output_dir = str(run.path)
    if not claim.replaces:
        with claim.released_on_error():
            run.set_status("starting", pid=os.getpid(), created=claim.marker["created"])
    return claim


def open_run_directory(run: RunDirectory, recipe: Recipe, resume: "Resume | None", environment: dict,
                       claim: Claim | None, accepted: Sequence[str] = ()) -> None:
    """Rank 0 only: from here on the run exists, marked ``running`` until it completes.

    ``claim``: the folder :func:`claim_run_directory` claimed in this process (None when a launcher
    gave this process another rank than the one it ends up with: it claims now).
    ``environment`` describes this process; a resume adds it to ``environment.json``, with the
    ``accepted`` changes (:func:`gluebox.recipe.resume.check_unchanged`). ``config.yaml`` holds paths
    absolute, so that a resume from another folder finds the same files.
    """
    config = recipe.config
    if resume is None:
        if claim is None:
            claim = claim_run_directory(config, run)
        claim.take()
        run.mark_running()
        run.write_config(absolute_paths(config.to_dict()))
        run.write_json(TASK, recipe.task.to_dict())
        run.write_json(MEMORY_PLAN, recipe.plan.to_dict())
        run.write_json(ENVIRONMENT, environment)
    else:
        from gluebox.runs.environment import with_resume

        if read_marker(run.path) is None:  # made before the marker: it gets one now, and its checkpoints its id
            write_marker(run.path, new_marker(RUN))
        run.reopen()
        run.write_config(absolute_paths(config.to_dict()))  # with this session's harmless flags (a new --checkpoint_dir)
        run.write_json(ENVIRONMENT, with_resume(resume.environment, environment, list(accepted),
                                                time.strftime("%Y-%m-%dT%H:%M:%S%z")))
        if accepted:
            print(f"resuming despite changes (--accept_changes): {'; '.join(accepted)}", flush=True)
        print(f"resuming {run.path} from {resume.checkpoint}", flush=True)


def _model_card(recipe: Recipe, run: RunDirectory):
    """``best_model/README.md`` of this run, from the exported epoch's validation results."""
    from gluebox.runs.model_card import model_card

    def card(validation: dict, epoch: int) -> str:
        return model_card(recipe.config, recipe.task, validation, epoch, len(recipe.encoded["train"]), run.path.name)

    return card


def train(config: TrainConfig, resume: "Resume | None" = None, callbacks: Sequence = (),
          started: float | None = None) -> RunDirectory:
    """Fine-tune ``config.model_name_or_path`` on the task and write a complete run directory.

    With ``resume``, continue that unfinished run from its last checkpoint instead.

    In a multi-process run every process runs this function; rank 0 alone checks, creates and
    writes the run directory, and the others return the same :class:`RunDirectory` once
    training ends. ``callbacks`` are objects with hooks of the training loop (``gluebox sweep``
    reports each epoch to Ray Tune with one); a callback that ends the run on purpose marks it
    ``stopped`` and raises :class:`RunStopped`, which passes through unchanged. ``started``: the
    ``time.monotonic()`` that ``--time_budget`` counts from (default: now; ``gluebox train``: its process's start).
    """
    from gluebox.data.sources import check_data_files
    from gluebox.training.distributed import launcher_rank
    from gluebox.training.quiet import quiet_libraries

    session_start = time.monotonic() if started is None else started
    started = time.time()
    config.validate()
    check_data_files(config)  # cheap; before anything looks at the model
    quiet_libraries()
    expected_rank = launcher_rank(config.devices)
    run = check_run_directory(config, resume, expected_rank)
    claim = claim_run_directory(config, run) if resume is None and expected_rank == 0 else None
    # A start refused from here until the run opens (bad data, a model that does not load) gives the folder back.
    with claim.released_on_error() if claim is not None else contextlib.nullcontext():
        recipe = build(config, resume)

        from gluebox.runs.environment import describe
        from gluebox.training.checkpoints import Checkpoints
        from gluebox.training.distributed import end_processes
        from gluebox.training.eta import estimate_epoch_seconds, matmul_speeds, precision_hint
        from gluebox.training.hardware import device_name
        from gluebox.training.loop import check_validation_shards, fit, make_fabric
        from gluebox.training.signals import StopRequest
        from gluebox.training.tracking import wandb_logger

        stop = StopRequest()
        budget = None
        if config.time_budget is not None:
            from gluebox.training.budget import TimeBudget, make_clock

            budget = TimeBudget(config.time_budget, make_clock(session_start))
        checkpoints = Checkpoints(config.checkpoint_dir, run, recipe.tokenizer, recipe.monitor, config.checkpoint_every_n_steps,
                                  config.checkpoint_every_minutes, stop, model_card=_model_card(recipe, run))
        logger = wandb_logger(config, run.path, run.path.name)
        fabric = make_fabric(config, logger, callbacks)
        if fabric.world_size > 1:
            check_validation_shards(fabric, recipe)

        device = device_name(config.accelerator)
        lead = fabric.is_global_zero
        if claim is not None and not lead:  # the launcher made another process rank 0: that one claims
            claim.release()
            claim = None
        if lead:
            environment = describe(device) | {
                "torch_threads": recipe.threads, "processes": fabric.world_size, "reproducibility": config.reproducibility,
                "adamw": recipe.optim.implementation, "precision": config.precision, "data": recipe.data}
            accepted: list[str] = []
            if resume is not None:  # before anything is printed or written
                from gluebox.recipe.resume import check_unchanged

                accepted = check_unchanged(resume, environment, config.reproducibility)
            print(recipe.plan.describe(), flush=True)
            speeds = matmul_speeds()
            print(estimate_epoch_seconds(recipe, fabric.world_size, speeds)[1], flush=True)
            hint = precision_hint(speeds, config.precision, device, portable=config.reproducibility != "fast")
            if hint is not None:
                print(hint, flush=True)
            if config.peft == "lora":
                from gluebox.training.adapters import describe_lora

                print(describe_lora(recipe.model), flush=True)
            if fabric.world_size > 1:
                print(f"{fabric.world_size} processes ({config.num_nodes} node(s) x {config.devices}), "
                      f"strategy {type(fabric.strategy).__name__}; rank 0 writes {run.path}", flush=True)
            open_run_directory(run, recipe, resume, environment, claim, accepted=accepted)
            stop.install()
            if logger is not None:
                logger.log_hyperparams(config.to_dict() | {"task": recipe.task.to_dict(), "memory_plan": recipe.plan.to_dict()})

    # Train, validating after every epoch; a stop signal ends it after a checkpoint.
    try:
        outcome = fabric.launch(fit, recipe, run, checkpoints, stop, resume.checkpoint if resume is not None else None,
                                budget)
    except RunStopped:
        raise
    except RunInterrupted as interruption:
        if lead:
            run.try_set_status("interrupted", signal=interruption.signal_name,
                               epochs_completed=checkpoints.step // len(recipe.batch_sampler), step=checkpoints.step)
        if interruption.every_process and fabric.world_size > 1:  # all stopped after the same checkpoint
            stop.ignore_from_now()
            end_processes(fabric, interruption.exit_code)
        if not lead:  # rank 0 says it, once
            raise RunInterrupted(str(interruption), interruption.signum, quiet=True) from None
        advice = (f"resume with `gluebox train --resume {run.path}`" if checkpoints.path.exists()
                  else "no checkpoint was saved yet; start again with --overwrite")
        if fabric.world_size > 1 and not getattr(fabric.strategy.launcher, "procs", None):  # not Fabric's launcher
            advice += f", started the same way ({fabric.world_size} processes under torchrun or your scheduler)"
        raise RunInterrupted(f"{interruption}; {advice}", interruption.signum) from None
    except BaseException as error:
        if lead:
            run.try_set_status("failed", error=type(error).__name__)
        raise
    finally:
        stop.uninstall()
    if fabric.world_size > 1:
        end_processes(fabric, 0)
    if not lead:
        return run
    # What rank 0 wrote.
    records = run.metrics()
    if not records or records[-1]["step"] != outcome.steps:
        run.set_status("interrupted", validations=len(records))
        raise GlueboxError(f"training was interrupted after {len(records)} validation(s); {run.path} is incomplete")

    from gluebox.runs.summary import build_summary

    summary = build_summary(records, recipe, started, device, fabric.world_size, outcome)
    if budget is not None:
        from gluebox.runs.summary import budget_summary

        summary["time_budget"] = budget_summary(budget.seconds, budget.spent(), outcome.planned_steps, outcome.steps)
    run.write_json(SUMMARY, summary)
    if logger is not None:
        logger.experiment.summary.update({k: v for k, v in summary.items() if not isinstance(v, dict)})
        if config.log_model:
            from gluebox.training.tracking import log_best_model

            log_best_model(logger, run.file(BEST_MODEL), summary["best"])
        logger.finalize("success")
        import wandb

        wandb.finish()
    run.set_status("complete", wall_time_seconds=summary["wall_time_seconds"])
    return run
