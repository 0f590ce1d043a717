"""``gluebox predict``: one prediction per input row, as GLUE submission TSV, CSV or JSON Lines.

Predictions are in the run's own terms (``task.json``): a label as the training data wrote it (whole
numbers as integers), a float for regression; GLUE tasks keep GLUE's submission format. A ``--file``
is read with the run's own text columns; its label column, if any, is not needed.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from gluebox.errors import GlueboxError
from gluebox.runs.directory import atomic_write_text

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def format_predictions(ids: list[str], values: list, fmt: str) -> str:
    """GLUE's ``index<TAB>prediction`` for .tsv; ``id,prediction`` for .csv; objects for .jsonl."""
    if fmt == "jsonl":
        return "".join(json.dumps({"id": i, "prediction": v}) + "\n" for i, v in zip(ids, values))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow(["index", "prediction"] if fmt == "tsv" else ["id", "prediction"])
    writer.writerows(zip(ids, values))
    return buffer.getvalue()


def predict(path: str, output: str, split: str | None = None, file: str | None = None, data_dir: str | None = None,
            task_name: str | None = None, batch_size: int | None = None) -> Path:
    from gluebox.data.sources import load_split
    from gluebox.recipe.evaluation import load_run, predictions
    from gluebox.tasks import GLUE_TASKS

    fmt = FORMATS.get(Path(output).suffix.lower())
    if fmt is None:
        raise GlueboxError(f"--output {output}: use a .tsv (GLUE submission), .csv or .jsonl file name")
    loaded = load_run(path)
    config, task = loaded.config, loaded.task
    if data_dir is not None:
        config.data_dir = data_dir
    data_task = task
    if task_name is not None:
        if task_name not in GLUE_TASKS:
            raise GlueboxError(f"unknown task '{task_name}'")
        data_task = GLUE_TASKS[task_name]
        if data_task.labels != task.labels:
            raise GlueboxError(f"this run was trained on {task.name}, whose labels do not match {task_name}'s")
        config.task_name = task_name
    split = split or data_task.test_splits[0]
    if file is None and config.uses_custom_files and split.startswith("test") and config.test_file is None:
        columns = " and ".join(f"'{c}'" for c in (task.text_a, task.text_b) if c)
        raise GlueboxError(f"{path} was trained on your own files and has no test file; give the rows to predict "
                           f"with --file (a .csv, .tsv or .jsonl file with column(s) {columns})")
    examples = load_split(config, data_task, split if file is None else "test", file=file)
    values = predictions(loaded, examples, batch_size)
    target = Path(output)
    atomic_write_text(target, format_predictions(examples.ids, values, fmt))
    print(f"wrote {len(values)} predictions to {target}", flush=True)
    return target
