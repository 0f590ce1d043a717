"""The GLUE tasks: their columns, labels, splits and metrics.

``TASK_TO_KEYS`` follows ``run_glue.py`` of huggingface/transformers. File layouts follow the
standard ``glue_data/<TASK>/`` folders written by GLUE's ``download_glue_data.py``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from gluebox.errors import GlueboxError

TASK_TO_KEYS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None),
    "sst2": ("sentence", None),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
    "ax": ("premise", "hypothesis"),
}


@dataclass(frozen=True)
class TsvLayout:
    """Where a GLUE task's fields sit in its standard TSV files.

    Columns are given by header name, as ``download_glue_data.py`` writes them; ``None``
    means the file has no such column (test files have no labels).
    """

    text_a: str
    text_b: str | None
    label: str | None
    index: str | None = None
    columns: tuple[str, ...] | None = None
    """Column names of a file without a header line (CoLA's train and dev files)."""


@dataclass(frozen=True)
class DataFile:
    """One of the user's own data files, as a run records it: the split it gave, its name, its rows."""

    split: str
    file: str
    """The file's name, never its path (a run directory and a model card hold no local paths)."""
    rows: int
    """Rows in the file (before --max_train_samples / --max_eval_samples)."""


@dataclass(frozen=True)
class Task:
    """Everything gluebox needs to know about one classification or regression task.

    A run saves its task in ``task.json`` (:meth:`to_dict`) once, when it starts; ``evaluate``,
    ``predict``, ``--resume``, ``plot`` and the GLUE suite read it back (:meth:`from_dict`).
    """

    name: str
    text_a: str
    """Column of the first (or only) text."""
    text_b: str | None
    """Column of the second text of a pair; ``None`` for single-sentence tasks."""
    labels: tuple[str, ...]
    """Label names in id order; empty for regression."""
    metrics: tuple[str, ...]
    """Metric names reported on validation, e.g. ``("accuracy", "f1")``."""
    main_metric: str
    """The metric that plots and "best checkpoint" use (higher is better)."""
    validation_splits: tuple[str, ...] = ("validation",)
    """Validation split names; MNLI has two."""
    test_splits: tuple[str, ...] = ("test",)
    train_file: str = "train.tsv"
    split_files: dict[str, str] = field(default_factory=dict)
    """Split name to file name in a GLUE data folder."""
    tsv: TsvLayout | None = None
    test_tsv: TsvLayout | None = None
    label_aliases: dict[str, str] = field(default_factory=dict)
    """Other spellings of a label (as in the hub's label names) that map onto a label."""
    glue_folder: str | None = None
    """The task's folder name in GLUE's ``glue_data/`` (``MRPC``, ``SST-2``, ...)."""
    submission_files: dict[str, str] = field(default_factory=dict)
    """Test split name to the file name gluebenchmark.com expects in a submission zip."""
    test_rows: dict[str, int] = field(default_factory=dict)
    """Test split name to the number of rows of GLUE's official test file (indices 0 to n-1)."""
    label_column: str | None = "label"
    """Column of the label in a .csv, .tsv or .jsonl file (for GLUE tasks, the hub dataset's name)."""
    glue: bool = False
    """One of GLUE's tasks: its labels, metrics and submission format (also when its data are your files)."""
    data: tuple[DataFile, ...] = ()
    """Your own data files, with their row counts; empty for GLUE's folders and the hub dataset."""

    def to_dict(self) -> dict:
        """``task.json``: what ``evaluate``, ``predict``, ``--resume`` and the model card read back.

        Labels are written in their original form (:attr:`label_values`): a task whose labels are
        whole numbers has integers there, any other has strings.
        """
        saved = {
            "name": self.name,
            "glue": self.glue,
            "problem_type": "regression" if self.is_regression else "classification",
            "text_a": self.text_a,
            "text_b": self.text_b,
            "label_column": self.label_column,
            "labels": list(self.label_values),
            "metrics": list(self.metrics),
            "main_metric": self.main_metric,
            "validation_splits": list(self.validation_splits),
        }
        if self.data:
            saved["data"] = {f.split: {"file": f.file, "rows": f.rows} for f in self.data}
        return saved

    @classmethod
    def from_dict(cls, saved: dict, label_column: str = "label") -> "Task":
        """The task a run saved with :meth:`to_dict`.

        A ``task.json`` of an older gluebox has only the name, text columns, labels and metrics:
        it is a GLUE task when its name, columns and labels are GLUE's, else your own data's, with
        ``label_column`` (the run's ``--label_column``) as its label column.
        """
        name, text_a, text_b = saved["name"], saved["text_a"], saved["text_b"]
        labels = tuple(str(label) for label in saved.get("labels") or ())
        label_column = saved.get("label_column", label_column)
        glue = saved.get("glue")
        if glue is None:
            known = GLUE_TASKS.get(name)
            glue = known is not None and (text_a, text_b, labels) == (known.text_a, known.text_b, known.labels)
        data = tuple(DataFile(split, entry["file"], int(entry["rows"]))
                     for split, entry in (saved.get("data") or {}).items())
        if glue:
            known = GLUE_TASKS[name]
            if not data and (text_a, text_b, label_column) == (known.text_a, known.text_b, known.label_column):
                return known
            return glue_task_on_files(name, text_a, text_b, label_column, data)
        return custom_task(name, text_a, text_b, labels, label_column, data)

    @property
    def label_values(self) -> tuple[str | int, ...]:
        """The labels as the training data wrote them, in id order: whole numbers (``0``, ``12``, ``-1``)
        as integers, any other label as text. GLUE's labels stay text: its submission format is unchanged."""
        if not self.glue and self.labels and all(_WHOLE_NUMBER.fullmatch(label) for label in self.labels):
            return tuple(int(label) for label in self.labels)
        return self.labels

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)

    @property
    def is_pair(self) -> bool:
        return self.text_b is not None

    def monitor(self, metric_for_best: str | None = None) -> "Monitor":
        """The validation metric that picks the best model and drives early stopping: ``metric_for_best``
        (``validation/loss``, ``f1``: a bare name is the first validation split's), default the main metric of
        the first validation split. A metric the task does not report is a one-line error."""
        if metric_for_best is None:
            return Monitor(f"{self.validation_splits[0]}/{self.main_metric}", greater_is_better=True)
        key = metric_for_best if "/" in metric_for_best else f"{self.validation_splits[0]}/{metric_for_best}"
        known = [f"{split}/{metric}" for split in self.validation_splits for metric in (*self.metrics, "loss")]
        if key not in known:
            raise GlueboxError(f"--metric_for_best {metric_for_best}: the {self.name} task reports no such metric; "
                               f"choose one of {', '.join(known)}")
        return Monitor(key, greater_is_better=not key.endswith("/loss"))

    @property
    def score_metrics(self) -> tuple[str, ...]:
        """The validation metrics the GLUE score averages for this task (MNLI: both splits' accuracy)."""
        return tuple(f"{split}/{metric}" for split in self.validation_splits for metric in self.metrics)


@dataclass(frozen=True)
class Monitor:
    """A validation metric to pick the best model by: its key in the validation results (``validation/f1``)
    and its direction (a loss is minimized, every other metric maximized)."""

    key: str
    greater_is_better: bool = True

    def is_better(self, value: float | None, best: float | None, min_delta: float = 0.0) -> bool:
        """See :func:`is_better`."""
        return is_better(value, best, self.greater_is_better, min_delta)


def is_better(value: float | None, best: float | None, greater_is_better: bool = True, min_delta: float = 0.0) -> bool:
    """True when ``value`` beats ``best`` so far by more than ``min_delta``; NaN (a Pearson over constant
    predictions) never does, and a NaN ``best`` (an earlier gluebox kept it) counts as none."""
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best + min_delta if greater_is_better else value < best - min_delta


def _glue_task(name: str, labels, metrics, main_metric, tsv, test_tsv, **kwargs) -> Task:
    text_a, text_b = TASK_TO_KEYS[name]
    validation_splits = kwargs.pop("validation_splits", ("validation",))
    test_splits = kwargs.pop("test_splits", ("test",))
    split_files = {"train": "train.tsv"}
    if validation_splits == ("validation",):
        split_files["validation"] = "dev.tsv"
    else:
        for split in validation_splits:
            split_files[split] = "dev_" + split.split("_", 1)[1] + ".tsv"
    if test_splits == ("test",):
        split_files["test"] = "test.tsv"
    else:
        for split in test_splits:
            split_files[split] = "test_" + split.split("_", 1)[1] + ".tsv"
    split_files.update(kwargs.pop("split_files", {}))
    kwargs.setdefault("glue_folder", _GLUE_FOLDERS[name])
    kwargs.setdefault("submission_files", {split: file for split, file in _SUBMISSION_FILES.items() if split in test_splits}
                      if name == "mnli" else {test_splits[0]: _SUBMISSION_FILES[name]})
    kwargs.setdefault("test_rows", {split: rows for split, rows in _TEST_ROWS.items() if split in test_splits}
                      if name == "mnli" else {test_splits[0]: _TEST_ROWS[name]})
    return Task(
        name=name,
        text_a=text_a,
        text_b=text_b,
        labels=tuple(labels),
        metrics=tuple(metrics),
        main_metric=main_metric,
        validation_splits=tuple(validation_splits),
        test_splits=tuple(test_splits),
        split_files=split_files,
        tsv=tsv,
        test_tsv=test_tsv,
        glue=True,
        **kwargs,
    )


_WHOLE_NUMBER = re.compile(r"0|-?[1-9][0-9]*")


_GLUE_FOLDERS = {
    "cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B",
    "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "ax": "diagnostic",
}

_SUBMISSION_FILES = {
    "cola": "CoLA.tsv", "sst2": "SST-2.tsv", "mrpc": "MRPC.tsv", "qqp": "QQP.tsv", "stsb": "STS-B.tsv",
    "test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv", "qnli": "QNLI.tsv", "rte": "RTE.tsv",
    "wnli": "WNLI.tsv", "ax": "AX.tsv",
}
_TEST_ROWS = {
    "cola": 1063, "sst2": 1821, "mrpc": 1725, "qqp": 390965, "stsb": 1379, "test_matched": 9796,
    "test_mismatched": 9847, "qnli": 5463, "rte": 3000, "wnli": 146, "ax": 1104,
}
"""Rows of GLUE's official test files (as in the hub dataset nyu-mll/glue)."""

_BINARY = ("0", "1")
_NLI = ("entailment", "neutral", "contradiction")
_RTE = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, Task] = {
    "cola": _glue_task(
        "cola", _BINARY, ("matthews_correlation",), "matthews_correlation",
        TsvLayout(
            text_a="sentence", text_b=None, label="label",
            columns=("source", "label", "original_label", "sentence"),
        ),
        TsvLayout(text_a="sentence", text_b=None, label=None, index="index"),
        label_aliases={"unacceptable": "0", "acceptable": "1"},
    ),
    "sst2": _glue_task(
        "sst2", _BINARY, ("accuracy",), "accuracy",
        TsvLayout(text_a="sentence", text_b=None, label="label"),
        TsvLayout(text_a="sentence", text_b=None, label=None, index="index"),
        label_aliases={"negative": "0", "positive": "1"},
    ),
    "mrpc": _glue_task(
        "mrpc", _BINARY, ("accuracy", "f1"), "accuracy",
        TsvLayout(text_a="#1 String", text_b="#2 String", label="Quality"),
        TsvLayout(text_a="#1 String", text_b="#2 String", label=None, index="index"),
        label_aliases={"not_equivalent": "0", "equivalent": "1"},
    ),
    "qqp": _glue_task(
        "qqp", _BINARY, ("accuracy", "f1"), "accuracy",
        TsvLayout(text_a="question1", text_b="question2", label="is_duplicate", index="id"),
        TsvLayout(text_a="question1", text_b="question2", label=None, index="id"),
        label_aliases={"not_duplicate": "0", "duplicate": "1"},
    ),
    "stsb": _glue_task(
        "stsb", (), ("pearson", "spearmanr"), "pearson",
        TsvLayout(text_a="sentence1", text_b="sentence2", label="score", index="index"),
        TsvLayout(text_a="sentence1", text_b="sentence2", label=None, index="index"),
    ),
    "mnli": _glue_task(
        "mnli", _NLI, ("accuracy",), "accuracy",
        TsvLayout(text_a="sentence1", text_b="sentence2", label="gold_label", index="index"),
        TsvLayout(text_a="sentence1", text_b="sentence2", label=None, index="index"),
        validation_splits=("validation_matched", "validation_mismatched"),
        test_splits=("test_matched", "test_mismatched"),
    ),
    "qnli": _glue_task(
        "qnli", _RTE, ("accuracy",), "accuracy",
        TsvLayout(text_a="question", text_b="sentence", label="label", index="index"),
        TsvLayout(text_a="question", text_b="sentence", label=None, index="index"),
    ),
    "rte": _glue_task(
        "rte", _RTE, ("accuracy",), "accuracy",
        TsvLayout(text_a="sentence1", text_b="sentence2", label="label", index="index"),
        TsvLayout(text_a="sentence1", text_b="sentence2", label=None, index="index"),
    ),
    "wnli": _glue_task(
        "wnli", _BINARY, ("accuracy",), "accuracy",
        TsvLayout(text_a="sentence1", text_b="sentence2", label="label", index="index"),
        TsvLayout(text_a="sentence1", text_b="sentence2", label=None, index="index"),
        label_aliases={"not_entailment": "0", "entailment": "1"},
    ),
    "ax": _glue_task(
        "ax", _NLI, ("accuracy",), "accuracy",
        TsvLayout(text_a="sentence1", text_b="sentence2", label=None, index="index"),
        TsvLayout(text_a="sentence1", text_b="sentence2", label=None, index="index"),
        validation_splits=(),
        test_splits=("test",),
        split_files={"test": "diagnostic.tsv"},
    ),
}
"""GLUE tasks by the names ``run_glue.py`` and the ``nyu-mll/glue`` hub dataset use."""

GLUE_TASK_NAMES = tuple(GLUE_TASKS)

GLUE_SCORE_TASKS = tuple(name for name in GLUE_TASKS if name != "ax")
"""The nine tasks the GLUE score averages (the diagnostic set AX is reported apart)."""


def custom_task(
    name: str,
    text_a: str,
    text_b: str | None,
    labels: tuple[str, ...],
    label_column: str | None = "label",
    data: tuple[DataFile, ...] = (),
) -> Task:
    """A task for the user's own files: accuracy (and F1 when binary), or Pearson/Spearman."""
    if not labels:
        return Task(name, text_a, text_b, (), ("pearson", "spearmanr"), "pearson", label_column=label_column,
                    data=data)
    metrics = ("accuracy", "f1") if len(labels) == 2 else ("accuracy",)
    return Task(name, text_a, text_b, tuple(labels), metrics, "accuracy", label_column=label_column, data=data)


def glue_task_on_files(name: str, text_a: str, text_b: str | None, label_column: str | None,
                       data: tuple[DataFile, ...] = ()) -> Task:
    """A GLUE task whose data are your own files (``--task_name rte --train_file ...``).

    GLUE's labels, metrics and main metric; your columns; one validation file. Labels may also be
    written as the hub dataset writes them: its label ids (MNLI's ``0``, ``1``, ``2``), and its
    label names for tasks whose labels are ``0`` and ``1`` (SST-2's ``negative``, ``positive``).
    """
    known = GLUE_TASKS[name]
    hub_ids = {str(i): label for i, label in enumerate(known.labels) if str(i) not in known.labels}
    return Task(name, text_a, text_b, known.labels, known.metrics, known.main_metric,
                glue_folder=known.glue_folder, label_aliases=known.label_aliases | hub_ids,
                label_column=label_column, glue=True, data=data)


def task_difference(saved: dict, task: Task) -> str | None:
    """How ``task`` (what a run's data give now) differs from the ``task.json`` the run saved, or None.

    Only what the saved file holds is compared (an older gluebox saved less), once both are read the
    same way (:meth:`Task.from_dict`).
    """
    if not isinstance(saved, dict):
        return "its task.json is missing or unreadable"
    then = Task.from_dict(saved, task.label_column or "label").to_dict()
    now = task.to_dict()
    for key in then:
        if key in saved and then[key] != now.get(key):
            return f"its data no longer give the task it started with ({key}: {now.get(key)!r} where task.json has {then[key]!r})"
    return None
