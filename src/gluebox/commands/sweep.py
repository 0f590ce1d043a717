"""``gluebox sweep SWEEP_FILE``: run a hyperparameter search on Ray Tune and rank the trials.

The sweep's folder::

    SWEEP_DIR/
      sweep.yaml                 the sweep as read (base config, space, settings)
      trials/trial-000/ ...      one normal gluebox run directory per trial
      tune/                      Ray Tune's own experiment files
      leaderboard.md, leaderboard.csv, sweep.png, sweep.json

Without ``--address`` gluebox starts a local Ray instance for the sweep, reachable from this
machine only (every Ray server on the loopback address, no dashboard, no usage statistics),
and shuts it down at the end. With ``--address`` (``auto``, ``HOST:6379`` or
``ray://HOST:10001``) it runs the trials on that cluster, whose nodes need gluebox installed
and the sweep folder, data and model at the same paths (a shared filesystem).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from gluebox.errors import GlueboxError
from gluebox.runs.directory import RunDirectory, atomic_write_text
from gluebox.runs.folders import Claim, FolderKind, claim, claim_new_name
from gluebox.sweep.cluster import connect, import_ray
from gluebox.sweep.report import LEADERBOARD_CSV, LEADERBOARD_MD, PLOT, SWEEP_JSON, rank_outcomes, read_outcome, write_reports
from gluebox.sweep.spec import SweepConfig, load_sweep, trial_config, trial_name

TRIALS = "trials"
TUNE = "tune"
SWEEP_YAML = "sweep.yaml"

SWEEP = FolderKind(
    "sweep", "sweep folder", frozenset({SWEEP_YAML, TRIALS, TUNE, LEADERBOARD_MD, LEADERBOARD_CSV, PLOT, SWEEP_JSON}),
    frozenset({SWEEP_YAML, TRIALS}),
    lambda path: f"sweep folder {path} already exists; pass --overwrite to replace it or choose another --output_dir",
)
"""A sweep's folder: what gluebox writes in it, and how one made before the marker is told."""


def claim_sweep_dir(sweep_file: str, output_dir: str | None, overwrite: bool) -> Claim:
    """The sweep's folder, claimed: the one given, or ``$GLUEBOX_RUNS_DIR`` (or ``runs``) /
    ``sweep-<file>-<yyyymmdd-hhmmss>`` (``-2``, ``-3``... when taken)."""
    if output_dir is not None:
        return claim(Path(output_dir).resolve(), SWEEP, overwrite)
    parent = Path(os.environ.get("GLUEBOX_RUNS_DIR", "runs"))
    return claim_new_name(parent.resolve(), f"sweep-{Path(sweep_file).stem}-{time.strftime('%Y%m%d-%H%M%S')}", SWEEP)


def resolve_metric(spec: SweepConfig, config) -> tuple[str, str]:
    """The metric that ranks trials (default: the task's main metric) and whether to max or min it."""
    from gluebox.data.sources import resolve_task

    task = resolve_task(config)
    known = {f"{s}/{m}" for s in task.validation_splits for m in (*task.metrics, "loss")} | {"train/loss"}
    metric = spec.metric or f"{task.validation_splits[0]}/{task.main_metric}"
    if metric not in known:
        raise GlueboxError(f"sweep: metric '{metric}' is not reported for task {task.name}; choose one of {', '.join(sorted(known))}")
    mode = spec.mode or ("min" if metric.endswith("loss") else "max")
    return metric, mode


def _trial_dirname(trial) -> str:
    return trial.config["trial"]["name"]


def sweep(sweep_file: str, address: str | None = None, output_dir: str | None = None, overwrite: bool = False) -> Path:
    """Run the sweep and write its reports; returns the sweep's folder."""
    import yaml

    from gluebox.config import environment_values
    from gluebox.sweep.trial import STOPPED_BY_SCHEDULER, STOPPED_BY_TUNE, run_trial

    started = time.time()
    spec = load_sweep(sweep_file)
    folder = claim_sweep_dir(sweep_file, output_dir or spec.output_dir, overwrite)
    sweep_dir = folder.path
    with folder.released_on_error():  # a sweep refused before it starts leaves nothing behind
        base = environment_values(given=spec.base) | spec.base
        trials_dir = sweep_dir / TRIALS

        # Every trial's configuration, drawn and checked before Ray starts.
        trials = []
        for index, params in enumerate(spec.trial_params()):
            name = trial_name(index)
            config = trial_config(base, params, trials_dir / name, spec.cpus_per_trial)
            try:
                config.validate()
            except GlueboxError as error:
                raise GlueboxError(f"sweep: {name} ({params}): {error}") from None
            trials.append({"name": name, "params": params})
        metric, mode = resolve_metric(spec, trial_config(base, trials[0]["params"], trials_dir, 1).validate())
        epochs = trial_config(base, trials[0]["params"], trials_dir, 1).epochs

        ray = import_ray(local=address is None)
        from ray import tune

        scheduler = None
        if spec.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                                      grace_period=spec.grace_period, reduction_factor=spec.reduction_factor)
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, base=base, trials_dir=str(trials_dir), cpus_per_trial=spec.cpus_per_trial,
                                 stop_reason=STOPPED_BY_SCHEDULER if scheduler is not None else STOPPED_BY_TUNE),
            {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial},
        )
        started_here = connect(ray, address)
        try:
            folder.take()  # Ray is up: an earlier sweep's files (with --overwrite) go now
            atomic_write_text(sweep_dir / SWEEP_YAML, yaml.safe_dump(spec.to_dict() | {"metric": metric, "mode": mode},
                                                                      sort_keys=False))
            print(f"sweep: {len(trials)} trial(s) of {epochs} epoch(s), {spec.max_concurrent} at a time, ranked by "
                  f"{metric} ({mode}); scheduler {spec.scheduler}; writing {sweep_dir}", flush=True)
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(trials)},
                tune_config=tune.TuneConfig(
                    metric=metric, mode=mode, scheduler=scheduler, num_samples=1,
                    max_concurrent_trials=spec.max_concurrent, reuse_actors=False,
                    trial_name_creator=_trial_dirname, trial_dirname_creator=_trial_dirname,
                ),
                run_config=tune.RunConfig(name=TUNE, storage_path=str(sweep_dir), verbose=1,
                                          failure_config=tune.FailureConfig(max_failures=0)),
            )
            results = tuner.fit()
            errors = {}
            for result in results:
                if result.error is not None:
                    errors[result.config["trial"]["name"]] = str(result.error).strip().splitlines()[-1][:300]
        finally:
            if started_here:
                ray.shutdown()

    outcomes = []
    for trial in trials:
        path = trials_dir / trial["name"]
        run = RunDirectory(path)
        status = run.status() if path.is_dir() else None
        if status and status.get("status") in ("starting", "running"):
            # The trial's Ray worker ended before the run did (stopped and torn down mid-epoch, or while it loaded).
            run.set_status("stopped", reason=errors.get(trial["name"]) or STOPPED_BY_TUNE,
                           epochs_completed=len(run.metrics()))
        outcomes.append(read_outcome(trial["name"], trial["params"], path, metric, mode, errors.get(trial["name"])))
    ranked = rank_outcomes(outcomes, mode)
    summary: dict[str, Any] = {
        "sweep_file": str(Path(sweep_file).resolve()),
        "output_dir": str(sweep_dir),
        "metric": metric,
        "mode": mode,
        "scheduler": spec.scheduler,
        "seed": spec.seed,
        "epochs": epochs,
        "base": base,
        "space": spec.to_dict()["space"],
        "ray": {"version": ray.__version__, "address": address or "local"},
        "wall_time_seconds": time.time() - started,
        "statuses": {s: sum(o.status == s for o in ranked) for s in sorted({o.status for o in ranked})},
    }
    write_reports(sweep_dir, ranked, metric, mode, summary)
    lines = [f"  {o.rank}. {o.name} {o.status} {metric} {o.best if o.best is not None else '-'}" for o in ranked[:5]]
    print("\n".join([f"sweep complete: {sweep_dir} (leaderboard.md, leaderboard.csv, sweep.png, sweep.json)", *lines]),
          flush=True)
    if not any(o.status == "complete" for o in ranked):
        raise GlueboxError(f"no trial of the sweep completed; see {sweep_dir / 'leaderboard.md'}")
    return sweep_dir
