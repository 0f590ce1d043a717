"""Turn a config into labelled splits: from GLUE TSV folders, the user's own files, or the hub."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from gluebox.config import TrainConfig
from gluebox.data.examples import Examples
from gluebox.data.readers import Row, detect_format, read_rows
from gluebox.errors import GlueboxError
from gluebox.tasks import GLUE_TASKS, DataFile, Task, TsvLayout, custom_task, glue_task_on_files

HUB_DATASET = "nyu-mll/glue"
"""The hub dataset that GLUE tasks load from when no --data_dir is given."""


def resolve_task(config: TrainConfig) -> Task:
    """The task of a run: a GLUE task, or one built from the user's training file.

    With your own files the task is your data's, named by ``--task_name`` or the training file
    (:attr:`TrainConfig.resolved_task_name`), unless ``--task_name`` names a GLUE task: then your files
    hold that GLUE task, with its labels and metrics (:func:`gluebox.tasks.glue_task_on_files`).
    """
    if not config.uses_custom_files:
        task = GLUE_TASKS[config.task_name]
        if not task.validation_splits and config.train_file is None:
            raise GlueboxError(
                f"task '{task.name}' has no training data; train on mnli and run "
                f"`gluebox predict RUN --task_name {task.name}`"
            )
        return task
    if config.train_file is None:
        raise GlueboxError("--validation_file needs --train_file too (the labels come from the training file)")
    rows = read_rows(config.train_file)
    _require_columns(config.train_file, rows, _custom_columns(config, labelled=True))
    name = config.resolved_task_name
    if config.task_name in GLUE_TASKS:
        return _glue_task_on_files(config)
    raw = [row[config.label_column].strip() for row in rows]
    problem = config.problem_type
    if problem == "auto":
        problem = "regression" if _looks_like_scores(raw) else "classification"
    columns = (config.text_column, config.text_pair_column)
    if problem == "regression":
        return custom_task(name, *columns, (), config.label_column)
    labels = sorted(set(raw), key=_label_sort_key)
    if "" in labels:
        line = rows[raw.index("")]["__line__"]
        raise GlueboxError(f"{config.train_file}, line {line}: empty label in column '{config.label_column}'")
    if len(labels) < 2:
        raise GlueboxError(f"{config.train_file}: every row has label '{labels[0]}'; classification needs two or more")
    _check_class_count(config, raw, labels)
    return custom_task(name, *columns, tuple(labels), config.label_column)


MAX_CLASSES = 200
"""Classes a task of your own files may have unless ``--max_classes`` says otherwise."""
MANY_CLASSES = 20
"""Above this many classes, a label column where most classes have one row is refused too (an id or text column)."""


def _check_class_count(config: TrainConfig, raw: list[str], labels: list[str]) -> None:
    """Refuse a label column that looks like a text or id column: one line, with the flags that fix it."""
    from collections import Counter

    singles = sum(1 for count in Counter(raw).values() if count == 1)
    if config.max_classes is not None:
        refused = len(labels) > config.max_classes
    else:
        refused = len(labels) > MAX_CLASSES or (len(labels) > MANY_CLASSES and 2 * singles > len(labels))
    if not refused:
        return
    shown = ", ".join(repr(label[:30]) for label in raw[:3])
    limit = f"more than --max_classes {config.max_classes}" if config.max_classes is not None else (
        f"{singles} of them on one row only" if len(labels) <= MAX_CLASSES else f"more than {MAX_CLASSES}")
    raise GlueboxError(
        f"{config.train_file}: label column '{config.label_column}' has {len(labels)} different labels ({limit}; "
        f"first rows: {shown}); name the label column with --label_column, use --problem_type regression for "
        f"scores, or pass --max_classes {len(labels)} to train that many classes"
    )


def _glue_task_on_files(config: TrainConfig) -> Task:
    """``--task_name`` names a GLUE task and the data are your files: that task's labels and metrics."""
    name = config.task_name
    if not GLUE_TASKS[name].validation_splits:
        raise GlueboxError(f"--task_name {name} is GLUE's diagnostic test set, which has no training data; "
                           "name your task otherwise (or leave --task_name out)")
    glue_problem = "regression" if GLUE_TASKS[name].is_regression else "classification"
    if config.problem_type not in ("auto", glue_problem):
        raise GlueboxError(f"--task_name {name} is GLUE's {name}, a {glue_problem} task; drop --problem_type "
                           f"{config.problem_type}, or name your task otherwise")
    return glue_task_on_files(name, config.text_column, config.text_pair_column, config.label_column)


def describe_files(task: Task, splits: dict[str, Examples]) -> Task:
    """``task`` with the names and row counts of the files its splits came from (your own data only)."""
    return dataclasses.replace(task, data=tuple(DataFile(split, Path(examples.source).name, len(examples))
                                                for split, examples in splits.items()))


def check_data_files(config: TrainConfig) -> None:
    """The data files the config names exist (nothing is read): cheap, so it runs before the model
    is looked at, and a wrong data path is the first error a user sees, not a model that fails to load.

    Only local files are checked; the hub dataset is loaded, with its own errors, in :func:`load_split`.
    """
    if config.uses_custom_files:
        for flag in ("train_file", "validation_file"):
            path = getattr(config, flag)
            if path is not None and not Path(path).exists():
                raise GlueboxError(f"data file {path} does not exist")
        return
    task = GLUE_TASKS.get(config.task_name)
    if config.data_dir is None or task is None or not task.validation_splits:
        return  # the hub dataset, or errors that resolve_task explains
    for split in ("train", *task.validation_splits):
        _glue_file(config.data_dir, task, split)


def load_split(config: TrainConfig, task: Task, split: str, file: str | None = None) -> Examples:
    """One split of the task's data, labelled unless it is a test split.

    ``file`` reads that file in the task's layout instead (``gluebox evaluate --file``).
    """
    labelled = not split.startswith("test")
    if file is not None or config.uses_custom_files:
        path = file or {"train": config.train_file, "test": config.test_file}.get(split, config.validation_file)
        if path is None:
            raise GlueboxError(f"no {split} data: pass --{split if split in ('train', 'test') else 'validation'}_file")
        if task.tsv is not None and not config.uses_custom_files and detect_format(path) == "tsv":
            layout = task.tsv if labelled else task.test_tsv
            return _from_rows(task, read_rows(path, header=_header(layout)), layout, labelled, path)
        rows = read_rows(path)
        layout = _custom_layout(TsvLayout(task.text_a, task.text_b, task.label_column), rows, labelled)
        return _from_rows(task, rows, layout, labelled, path)
    if config.data_dir is not None:
        path = _glue_file(config.data_dir, task, split)
        layout = task.tsv if labelled else task.test_tsv
        return _from_rows(task, read_rows(path, "tsv", header=_header(layout)), layout, labelled, path)
    return _from_hub(task, split, labelled)


def _header(layout: TsvLayout) -> list[str] | None:
    return list(layout.columns) if layout.columns else None


def _glue_file(data_dir: str, task: Task, split: str) -> Path:
    folder = Path(data_dir)
    if not folder.is_dir():
        raise GlueboxError(f"--data_dir {data_dir} is not a folder")
    if not (folder / task.split_files["train"]).exists() and (folder / task.glue_folder).is_dir():
        folder = folder / task.glue_folder
    path = folder / task.split_files[split]
    if not path.exists():
        present = ", ".join(sorted(p.name for p in folder.glob("*.tsv"))) or "no .tsv files"
        raise GlueboxError(
            f"{folder} has no {path.name} for the {split} split of {task.name} ({present}); "
            f"point --data_dir at GLUE's {task.glue_folder} folder"
        )
    return path


def _custom_columns(config: TrainConfig, labelled: bool) -> list[str]:
    columns = [config.text_column]
    if config.text_pair_column:
        columns.append(config.text_pair_column)
    if labelled:
        columns.append(config.label_column)
    return columns


def _custom_layout(layout: TsvLayout, rows: list[Row], labelled: bool) -> TsvLayout:
    index = next((name for name in ("idx", "index", "id") if name in rows[0]), None)
    return TsvLayout(layout.text_a, layout.text_b, layout.label if labelled else None, index=index)


def _require_columns(path, rows: list[Row], columns: list[str]) -> None:
    """Every row has every column; CSV and TSV rows share a header, JSON Lines records may not."""
    for row in rows:
        missing = next((name for name in columns if name not in row), None)
        if missing is None:
            continue
        present = ", ".join(name for name in row if name != "__line__")
        where = f"{path}" if row is rows[0] else f"{path}, line {row['__line__']}"
        raise GlueboxError(
            f"{where}: no column '{missing}' (columns: {present}); "
            "name the right ones with --text_column, --text_pair_column and --label_column"
        )


def _from_rows(task: Task, rows: list[Row], layout: TsvLayout, labelled: bool, path) -> Examples:
    columns = [layout.text_a] + ([layout.text_b] if layout.text_b else [])
    if labelled and layout.label:
        columns.append(layout.label)
    _require_columns(path, rows, columns)
    text_a, text_b, labels, ids = [], [] if layout.text_b else None, [] if labelled else None, []
    for number, row in enumerate(rows):
        line = row["__line__"]
        for column in columns[: 2 if layout.text_b else 1]:
            if not row[column].strip():
                raise GlueboxError(f"{path}, line {line}: empty text in column '{column}'; fill it in or remove the row")
        text_a.append(row[layout.text_a])
        if text_b is not None:
            text_b.append(row[layout.text_b])
        if labels is not None:
            labels.append(_parse_label(task, row[layout.label].strip(), path, line))
        ids.append(row[layout.index].strip() if layout.index and layout.index in row else str(number))
    return Examples(text_a, text_b, labels, ids, str(path))


def _parse_label(task: Task, raw: str, path, line: str) -> int | float:
    if task.is_regression:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise GlueboxError(f"{path}, line {line}: score '{raw}' is not a number; {task.name} needs numeric scores")
        return value
    name = task.label_aliases.get(raw, raw)
    if name not in task.labels:
        raise GlueboxError(
            f"{path}, line {line}: label '{raw}' is not one of {task.name}'s labels ({', '.join(task.labels)})"
        )
    return task.labels.index(name)


def _looks_like_scores(raw: list[str]) -> bool:
    """True when every label is a number and some are not whole numbers."""
    try:
        values = [float(value) for value in raw]
    except ValueError:
        return False
    return any(not value.is_integer() for value in values if math.isfinite(value))


def _label_sort_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _from_hub(task: Task, split: str, labelled: bool) -> Examples:
    """A GLUE split from the hub dataset, or from the local datasets cache when offline."""
    try:
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
        data = datasets.load_dataset(HUB_DATASET, task.name, split=split)
    except Exception as error:  # datasets raises many types for "not reachable / not cached"
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise GlueboxError(
            f"cannot load {HUB_DATASET}/{task.name} split '{split}' from the hub or the local cache ({reason}); "
            f"run `gluebox cache --task_name {task.name}` while online, or pass --data_dir with GLUE's TSV files"
        ) from None
    text_b = list(data[task.text_b]) if task.text_b else None
    labels = None
    if labelled:
        raw = list(data["label"])
        labels = [float(v) for v in raw] if task.is_regression else [int(v) for v in raw]
    ids = [str(i) for i in data["idx"]] if "idx" in data.column_names else [str(i) for i in range(len(data))]
    return Examples(list(data[task.text_a]), text_b, labels, ids, f"{HUB_DATASET}/{task.name}:{split}")
