"""The suite: which tasks, each task's train config, and the suite's folder.

A suite folder::

    SUITE/
      suite.json            what the suite is: its tasks and each task's resolved train config
      runs/<task>/          one normal gluebox run directory per task
      predictions/*.tsv     each task's test predictions, in the leaderboard's format
      progress.json         each task's outcome so far (complete, failed and why, interrupted)
      results.md, results.csv, submission.zip, learning_curves.png

Every task trains with the same model and shared flags (the command line, a ``--config``
file, ``GLUEBOX_*`` variables), then its per-task overrides (``--overrides FILE``: a mapping
of task names to flag values). Everything is checked, and every task's config resolved and
validated, before anything is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gluebox.config import TrainConfig, config_values, environment_values, names_where, read_yaml_mapping
from gluebox.errors import GlueboxError
from gluebox.runs.directory import atomic_write_json
from gluebox.runs.folders import Claim, FolderKind, claim, claim_new_name
from gluebox.suite.submission import ZIP_NAME
from gluebox.sweep.spec import absolute_paths
from gluebox.tasks import GLUE_SCORE_TASKS, GLUE_TASKS

SUITE_FILE = "suite.json"
KIND = "gluebox glue suite"
RUNS = "runs"
PREDICTIONS = "predictions"
PROGRESS = "progress.json"
RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"
PLOT = "learning_curves.png"

SUITE = FolderKind(
    "glue suite", "glue suite",
    frozenset({SUITE_FILE, RUNS, PREDICTIONS, PROGRESS, RESULTS_MD, RESULTS_CSV, PLOT, ZIP_NAME}),
    frozenset({SUITE_FILE}),
    lambda path: f"suite {path} already exists; continue it with `gluebox glue --resume {path}`, "
                 "or choose another --output_dir",
)
"""A suite's folder: what gluebox writes in it, and how one made before the marker is told."""

SET_BY_SUITE = frozenset({
    "task_name", "output_dir", "overwrite", "checkpoint_dir", "devices", "num_nodes", "strategy",
    "train_file", "validation_file", "test_file", "text_column", "text_pair_column", "label_column", "problem_type",
})
"""Flags the suite sets for every task (each task's own folder, one process), or that are for your own data only."""
SHARED_ONLY = frozenset({"model_name_or_path", "data_dir"})
"""Flags every task shares: a per-task override may not change them."""
RESUMABLE = names_where("resumable")
"""Flags a resumed suite may change (they never touch the results)."""


def parse_tasks(values: list[str] | None) -> list[str]:
    """``--tasks cola,mrpc`` or ``--tasks cola mrpc``: GLUE task names, in the order GLUE lists them.

    Default: the nine tasks of the GLUE score. ``ax`` is not trained: it is predicted with the
    ``mnli`` run, so it needs ``mnli``.
    """
    if not values:
        return list(GLUE_SCORE_TASKS)
    names = [name.strip().lower() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in GLUE_TASKS]
    if unknown:
        raise GlueboxError(f"--tasks: unknown task(s) {', '.join(unknown)}; choose from {', '.join(GLUE_TASKS)}")
    if "ax" in names and "mnli" not in names:
        raise GlueboxError("--tasks: ax has no training data; it is predicted with the mnli run, so add mnli")
    if not names:
        raise GlueboxError("--tasks: give at least one task")
    return [name for name in GLUE_SCORE_TASKS if name in names]


def load_overrides(path: str | None) -> dict[str, dict[str, Any]]:
    """``--overrides FILE``: ``{task: {flag: value}}``; unknown tasks and flags are one-line errors."""
    if path is None:
        return {}
    data = read_yaml_mapping(path, "overrides file")
    overrides: dict[str, dict[str, Any]] = {}
    for task, values in data.items():
        if task not in GLUE_SCORE_TASKS:
            hint = "; ax is predicted with the mnli run" if task == "ax" else ""
            raise GlueboxError(f"overrides file {path}: unknown task '{task}' (tasks: {', '.join(GLUE_SCORE_TASKS)}){hint}")
        if not isinstance(values, dict):
            raise GlueboxError(f"overrides file {path}: {task} must be a mapping of flag names to values")
        checked = config_values(values, f"overrides file {path}: {task}")
        fixed = sorted(set(checked) & (SET_BY_SUITE | SHARED_ONLY))
        if fixed:
            raise GlueboxError(f"overrides file {path}: {task}: {', '.join(fixed)} cannot be set per task "
                               "(the suite sets it, or every task shares it)")
        overrides[task] = checked
    return overrides


def check_shared(given: dict[str, Any], source: str = "glue") -> None:
    """Shared flags (``--config`` file included) may not set what the suite sets for each task."""
    fixed = sorted(set(given) & SET_BY_SUITE)
    if fixed:
        raise GlueboxError(f"{source}: {', '.join(fixed)} cannot be set for a suite: it chooses each task's "
                           "run directory, runs each task as one process and trains on GLUE's data (use --tasks)")


def check_data_dir(data_dir: str | None, tasks: list[str]) -> None:
    """A ``glue_data/`` folder must hold every file of every task the suite runs (and AX with MNLI)."""
    if data_dir is None:
        return
    root = Path(data_dir)
    if not root.is_dir():
        raise GlueboxError(f"--data_dir {data_dir} is not a folder")
    needed = tasks + (["ax"] if "mnli" in tasks else [])
    missing = []
    for name in needed:
        task = GLUE_TASKS[name]
        folder = root / task.glue_folder
        if not folder.is_dir():
            missing.append(f"{name} (no {task.glue_folder}/ folder)")
            continue
        splits = task.test_splits if name == "ax" else ("train", *task.validation_splits, *task.test_splits)
        absent = [task.split_files[s] for s in splits if not (folder / task.split_files[s]).is_file()]
        if absent:
            missing.append(f"{name} ({task.glue_folder}/ has no {', '.join(absent)})")
    if missing:
        hint = ("; point --data_dir at glue_data/, the folder that holds the task folders"
                if (root / "train.tsv").exists() else "; add them, or leave those tasks out with --tasks")
        raise GlueboxError(f"--data_dir {data_dir} is missing {'; '.join(missing)}{hint}")


@dataclass
class Suite:
    """A suite's folder, tasks and each task's train config."""

    path: Path
    tasks: list[str]
    configs: dict[str, dict[str, Any]]
    """Each task's resolved train config (``TrainConfig.to_dict()``)."""
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = ""
    claim: Claim | None = field(default=None, repr=False, compare=False)
    """A new suite's folder, claimed by :func:`new_suite` (given back if the suite is refused before it starts)."""

    @property
    def ax(self) -> bool:
        """AX (the diagnostic set) is predicted with the mnli run."""
        return "mnli" in self.tasks

    def config(self, task: str) -> TrainConfig:
        return TrainConfig(**self.configs[task])

    def run_path(self, task: str) -> Path:
        return self.path / RUNS / task

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def model(self) -> str:
        return self.configs[self.tasks[0]]["model_name_or_path"]

    @property
    def data_dir(self) -> str | None:
        return self.configs[self.tasks[0]]["data_dir"]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "version": 1, "created": self.created, "tasks": self.tasks,
                "ax": self.ax, "overrides": self.overrides, "configs": self.configs}

    def save(self) -> None:
        if self.claim is not None:
            self.claim.take()
        atomic_write_json(self.path / SUITE_FILE, self.to_dict())

    def progress(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads((self.path / PROGRESS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def record(self, task: str, **outcome: Any) -> None:
        """Note a task's outcome in ``progress.json``."""
        progress = self.progress()
        progress[task] = outcome | {"updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_json(self.path / PROGRESS, progress)


def task_config(shared: dict[str, Any], overrides: dict[str, Any], task: str, run_path: Path,
                suite_name: str) -> TrainConfig:
    """One task's config: defaults < environment < shared flags < the task's overrides < what the suite sets."""
    values = environment_values() | shared | overrides
    values = absolute_paths(values, Path.cwd())
    config = TrainConfig(**values)
    config.task_name = task
    config.output_dir = str(run_path)
    config.overwrite = False
    if config.wandb_run_name is None:
        config.wandb_run_name = f"{suite_name}-{task}"
    try:
        return config.validate()
    except GlueboxError as error:
        raise GlueboxError(f"{task}: {error}") from None


def default_suite_name(shared: dict[str, Any]) -> tuple[Path, str]:
    """``$GLUEBOX_RUNS_DIR`` (or ``runs``) and ``glue-<model>-<yyyymmdd-hhmmss>``: parent and stem of a new
    suite's default folder (claimed with ``-2``, ``-3``... when taken)."""
    import os
    import re

    model = environment_values().get("model_name_or_path") or shared.get("model_name_or_path") or TrainConfig.model_name_or_path
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(model).rstrip("/")).name) or "model"
    return Path(os.environ.get("GLUEBOX_RUNS_DIR", "runs")), f"glue-{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def new_suite(output_dir: str | None, tasks: list[str], shared: dict[str, Any],
              overrides: dict[str, dict[str, Any]]) -> Suite:
    """A new suite, checked, its folder claimed (new, or an empty one) but nothing else written:
    :meth:`Suite.save` writes it, and ``suite.claim.release()`` gives the folder back if it is refused first."""
    check_shared(shared)
    if output_dir:
        folder = claim(Path(output_dir), SUITE)
    else:
        folder = claim_new_name(*default_suite_name(shared), SUITE)
    with folder.released_on_error():
        path = folder.path.resolve()
        configs = {task: task_config(shared, overrides.get(task, {}), task, path / RUNS / task, path.name).to_dict()
                   for task in tasks}
        check_data_dir(configs[tasks[0]]["data_dir"], tasks)
    return Suite(path, tasks, configs, {t: v for t, v in overrides.items() if t in tasks},
                 time.strftime("%Y-%m-%dT%H:%M:%S%z"), claim=folder)


def open_suite(path: str, given: dict[str, Any]) -> Suite:
    """An existing suite to continue; only flags that never change results may be given (``RESUMABLE``)."""
    folder = Path(path)
    file = folder / SUITE_FILE
    if not folder.is_dir():
        raise GlueboxError(f"cannot resume {path}: no such suite folder")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise GlueboxError(f"cannot resume {path}: it is not a gluebox glue suite (no valid {SUITE_FILE})")
    changed = sorted(set(given) - RESUMABLE)
    if changed:
        raise GlueboxError(f"--resume continues {path} with the settings in its {SUITE_FILE}; drop "
                           f"{', '.join('--' + name for name in changed)} (only {', '.join(sorted(RESUMABLE))} may change)")
    # Run directories are found in the suite's folder where it is now (it may have been moved).
    configs = {task: values | {name: given[name] for name in RESUMABLE & set(given)}
               | {"output_dir": str(folder.resolve() / RUNS / task)}
               for task, values in data["configs"].items()}
    for task, values in configs.items():
        TrainConfig(**values).validate()
    suite = Suite(folder.resolve(), list(data["tasks"]), configs, data.get("overrides") or {}, data.get("created", ""))
    check_data_dir(suite.data_dir, suite.tasks)
    return suite
