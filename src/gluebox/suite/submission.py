"""The leaderboard's submission: one file per test set in a zip, exactly as gluebenchmark.com expects.

- file names: ``CoLA.tsv``, ``SST-2.tsv``, ``MRPC.tsv``, ``STS-B.tsv``, ``QQP.tsv``, ``MNLI-m.tsv``,
  ``MNLI-mm.tsv``, ``QNLI.tsv``, ``RTE.tsv``, ``WNLI.tsv``, ``AX.tsv``, at the zip's top level;
- each file: the header ``index<TAB>prediction``, then one row per row of the test file, in its
  order, with the test file's index;
- predictions: ``0``/``1`` for CoLA, SST-2, MRPC, QQP and WNLI; ``entailment``/``neutral``/
  ``contradiction`` for MNLI and AX; ``entailment``/``not_entailment`` for QNLI and RTE; STS-B
  scores clipped to [0, 5], written with 3 decimals.

The leaderboard rejects a zip with a missing file, so a task that was not run gets a
placeholder of the right length (a constant prediction), and the caller warns about it.
:func:`check_zip` validates any zip against the test files and names every problem.
"""

from __future__ import annotations

import difflib
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gluebox.errors import GlueboxError
from gluebox.runs.directory import atomic_write_bytes, atomic_write_text
from gluebox.tasks import GLUE_TASKS, Task

HEADER = "index\tprediction"
ZIP_NAME = "submission.zip"
LEADERBOARD_ORDER = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "ax")
STSB_RANGE = (0.0, 5.0)


@dataclass(frozen=True)
class SubmissionFile:
    """One file of the zip: which task's which test split it holds."""

    name: str
    task: str
    split: str

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The predictions the leaderboard accepts; empty for STS-B's scores."""
        return GLUE_TASKS[self.task].labels


SUBMISSION_FILES = tuple(SubmissionFile(name, task, split) for task in LEADERBOARD_ORDER
                         for split, name in GLUE_TASKS[task].submission_files.items())
BY_NAME = {file.name: file for file in SUBMISSION_FILES}


def files_of(task: str) -> list[SubmissionFile]:
    """The files a trained task fills (MNLI's two, and AX, which its run predicts)."""
    names = [task, "ax"] if task == "mnli" else [task]
    return [file for file in SUBMISSION_FILES if file.task in names]


def format_prediction(task: Task, value) -> str:
    """A label as the leaderboard spells it, or an STS-B score clipped to [0, 5] with 3 decimals."""
    if task.is_regression:
        low, high = STSB_RANGE
        return f"{min(high, max(low, float(value))):.3f}"
    if value not in task.labels:
        raise ValueError(f"{value!r} is not a {task.name} label")
    return str(value)


def submission_text(task: Task, ids: list[str], values: list) -> str:
    return "".join([HEADER + "\n", *(f"{i}\t{format_prediction(task, v)}\n" for i, v in zip(ids, values))])


def write_predictions(folder: Path, file: SubmissionFile, ids: list[str], values: list) -> Path:
    target = folder / file.name
    atomic_write_text(target, submission_text(GLUE_TASKS[file.task], ids, values))
    return target


def official_ids(file: SubmissionFile) -> list[str]:
    """The index column of GLUE's official test file: 0 to n-1."""
    return [str(i) for i in range(GLUE_TASKS[file.task].test_rows[file.split])]


def reference_ids(data_dir: str | None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each file's expected index column, and where it came from.

    From the test files in ``data_dir`` (a ``glue_data/`` folder) where they are there, else
    the official test files' row counts (indices 0 to n-1).
    """
    from gluebox.config import TrainConfig
    from gluebox.data.sources import load_split

    references, sources = {}, {}
    for file in SUBMISSION_FILES:
        task = GLUE_TASKS[file.task]
        path = Path(data_dir) / task.glue_folder / task.split_files[file.split] if data_dir else None
        if path is not None and path.is_file():
            config = TrainConfig(task_name=file.task, data_dir=str(Path(data_dir) / task.glue_folder))
            references[file.name] = load_split(config, task, file.split).ids
            sources[file.name] = str(path)
        else:
            references[file.name] = official_ids(file)
            sources[file.name] = f"GLUE's official {file.name[:-4]} test set ({len(references[file.name])} rows)"
    return references, sources


def placeholder_text(file: SubmissionFile, ids: list[str]) -> str:
    """A file of the right length whose every prediction is the first label (STS-B: 0.000)."""
    task = GLUE_TASKS[file.task]
    value = 0.0 if task.is_regression else task.labels[0]
    return submission_text(task, ids, [value] * len(ids))


def build_zip(predictions: Path, references: dict[str, list[str]], target: Path) -> list[str]:
    """Write the zip from the prediction files present; placeholders for the others. Their names."""
    placeholders = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in SUBMISSION_FILES:
            path = predictions / file.name
            if path.is_file():
                text = path.read_text(encoding="utf-8")
            else:
                text = placeholder_text(file, references[file.name])
                placeholders.append(file.name)
            archive.writestr(zipfile.ZipInfo(file.name, date_time=(1980, 1, 1, 0, 0, 0)), text,
                             compress_type=zipfile.ZIP_DEFLATED)
    atomic_write_bytes(target, buffer.getvalue())
    return placeholders


def check_zip(path: str | Path, references: dict[str, list[str]]) -> list[str]:
    """Every problem of a submission zip, one line each (an empty list: the leaderboard accepts it)."""
    path = Path(path)
    if not path.is_file():
        raise GlueboxError(f"--check {path}: no such file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise GlueboxError(f"--check {path}: not a zip file ({error})") from None
    problems: list[str] = []
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        found: dict[str, zipfile.ZipInfo] = {}
        for info in members:
            base = info.filename.rsplit("/", 1)[-1]
            if base in BY_NAME and "/" in info.filename:
                problems.append(f"{info.filename}: in a folder; the leaderboard wants {base} at the zip's top level")
            elif base in found:
                problems.append(f"{base}: in the zip twice")
            elif base in BY_NAME:
                found[base] = info
            else:
                close = difflib.get_close_matches(base, list(BY_NAME), n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(f"{info.filename}: not a GLUE submission file{hint}")
        for file in SUBMISSION_FILES:
            if file.name not in found:
                if not any(info.filename.endswith("/" + file.name) for info in members):
                    problems.append(f"{file.name}: missing (the leaderboard rejects a zip without it)")
                continue
            problems.extend(check_file(file, archive.read(found[file.name]), references[file.name]))
    return problems


def check_file(file: SubmissionFile, data: bytes, expected_ids: list[str]) -> list[str]:
    """The problems of one file: encoding, header, fields, row count, index order, predictions."""
    name = file.name
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [f"{name}: not UTF-8 text"]
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not lines:
        return [f"{name}: empty (expected the header {HEADER!r} and {len(expected_ids)} rows)"]
    problems = []
    if lines[0] != HEADER:
        problems.append(f"{name}: header is {lines[0]!r}, expected {HEADER!r}")
    rows = lines[1:]
    if len(rows) != len(expected_ids):
        problems.append(f"{name}: {len(rows)} rows, the test file has {len(expected_ids)}")
    bad_fields, bad_index, bad_value = [], [], []
    vocabulary = file.vocabulary
    for number, (line, expected) in enumerate(zip(rows, expected_ids + [None] * (len(rows) - len(expected_ids))), 2):
        fields = line.split("\t")
        if len(fields) != 2:
            bad_fields.append((number, len(fields)))
            continue
        index, value = fields
        if expected is not None and index != expected:
            bad_index.append((number, index, expected))
        if vocabulary:
            if value not in vocabulary:
                bad_value.append((number, value))
        else:
            try:
                score = float(value)
            except ValueError:
                score = math.nan
            if not (STSB_RANGE[0] <= score <= STSB_RANGE[1]):
                bad_value.append((number, value))
    if bad_fields:
        line, count = bad_fields[0]
        problems.append(f"{name}: {len(bad_fields)} row(s) without exactly 2 tab-separated fields "
                        f"(first: line {line}, {count} field(s))")
    if bad_index:
        line, got, want = bad_index[0]
        problems.append(f"{name}: {len(bad_index)} row(s) out of the test file's index order "
                        f"(first: line {line} has index {got!r}, expected {want!r})")
    if bad_value:
        line, got = bad_value[0]
        allowed = ", ".join(vocabulary) if vocabulary else "a number from 0 to 5"
        problems.append(f"{name}: {len(bad_value)} prediction(s) not {allowed} (first: line {line}, {got!r})")
    return problems
