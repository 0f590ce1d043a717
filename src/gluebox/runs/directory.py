"""The run directory: what a run writes, written so that a reader can trust it.

Every file is written to a temporary name and renamed into place, so a file under its
final name is always complete. ``status.json`` says whether the run is ``starting``,
``running``, ``complete``, ``failed`` or ``interrupted``; ``summary.json`` exists only for a
complete run. Which folders are gluebox's, and how a new one is claimed, is in
:mod:`gluebox.runs.folders`.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from gluebox.errors import GlueboxError

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
TASK = "task.json"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
SUMMARY = "summary.json"
STATUS = "status.json"
MEMORY_PLAN = "memory_plan.json"
BEST_MODEL = "best_model"
BEST_ADAPTER = "best_adapter"
"""``--peft lora`` runs: the best epoch's adapter alone, in peft's format (``best_model/`` has it merged)."""
PREDICTIONS = "validation_predictions.npz"
"""The last epoch's validation predictions, one array per split in dataset order (class ids as int64,
scores as float32): the bytes whose sha256 is the epoch's fingerprint. ``gluebox compare`` counts
the examples two runs predict differently from them."""
STEPS = "steps"
"""``steps/metrics.csv``: every optimizer step's loss, learning rate, throughput and memory
(written by :class:`gluebox.training.recorders.StepRecorder`). Checkpoints have their own
module, :mod:`gluebox.training.checkpoints`."""
CHECKPOINTS = "checkpoints"
"""The checkpoint folder inside a run directory (unless ``--checkpoint_dir`` puts them elsewhere)."""
WANDB = "wandb"
"""The W&B run files (:mod:`gluebox.training.tracking`)."""
RUN_FILES = frozenset({CONFIG, ENVIRONMENT, TASK, METRICS_CSV, METRICS_JSONL, SUMMARY, STATUS, MEMORY_PLAN,
                       BEST_MODEL, BEST_ADAPTER, PREDICTIONS, STEPS, CHECKPOINTS, WANDB})
"""Every entry gluebox writes at the top of a run directory: ``--overwrite`` removes these (and
their temporaries) and nothing else. A new file of the run belongs here."""


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
"""No space left, file larger than allowed (``ulimit -f``), disk quota exceeded."""
DISK_FULL_TEXTS = ("No space left on device", "File too large", "Disk quota exceeded")
"""The same, as libraries that wrap the OSError (torch's and safetensors' writers) spell them."""


def is_disk_full(error: BaseException) -> bool:
    """True for the errors that mean "the file system took no more bytes"."""
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    return any(text in str(error) for text in DISK_FULL_TEXTS)


@contextlib.contextmanager
def disk_full_is_an_error(path: Path | str, kept: str = "the previous version is kept"):
    """Turn a full disk while writing ``path`` into a one-line :class:`GlueboxError`."""
    try:
        yield
    except Exception as error:
        if not is_disk_full(error):
            raise
        raise GlueboxError(
            f"no space left on device while saving {path}; free space or use --checkpoint_dir; {kept}"
        ) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_file_beside(path: Path) -> str:
    """A new empty file next to ``path``, with the permissions a plain ``open`` would give."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: temp file in the same folder, fsync, rename.

    A full disk is a one-line error, and the previous file stays as it was.
    """
    with disk_full_is_an_error(path, "the previous version is kept"):
        atomic_write(path, lambda file: file.write(data))


def atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync it, rename it to ``path``."""
    tmp = temp_file_beside(path)
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_writable(path: Path) -> None:
    """Fail early, with one line, if ``path`` (or its nearest existing parent) cannot be written."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise GlueboxError(f"cannot create run directory {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise GlueboxError(f"cannot write to {probe}; choose a writable --output_dir")


class RunDirectory:
    """One run's folder and the files in it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def mark_running(self) -> None:
        """The run starts training: ``running``, with this process and when."""
        self.set_status("running", started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), pid=os.getpid())

    def set_status(self, status: str, **details: Any) -> None:
        current = self.status() or {}
        current.update(details)
        current["status"] = status
        current["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(self.file(STATUS), current)

    def try_set_status(self, status: str, **details: Any) -> None:
        """:meth:`set_status` when the run is already failing: a second error (a full disk) must not hide the first."""
        try:
            self.set_status(status, **details)
        except (OSError, GlueboxError):
            pass

    def reopen(self) -> None:
        """Mark an unfinished run as running again (``gluebox train --resume``)."""
        status = self.status() or {}
        for stale in ("error", "signal", "epochs_completed", "validations", "step"):
            status.pop(stale, None)
        status.update(
            status="running", resumed=time.strftime("%Y-%m-%dT%H:%M:%S%z"), pid=os.getpid(),
            resumes=int(status.get("resumes", 0)) + 1, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        atomic_write_json(self.file(STATUS), status)

    def status(self) -> dict | None:
        return _read_json(self.file(STATUS))

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_json(self.file(name), data)

    def read_json(self, name: str) -> Any:
        return _read_json(self.file(name))

    def write_config(self, config: dict) -> None:
        import yaml

        atomic_write_text(self.file(CONFIG), yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict:
        import yaml

        return yaml.safe_load(self.file(CONFIG).read_text(encoding="utf-8")) or {}

    def append_metrics(self, record: dict) -> None:
        """Add one epoch's record to metrics.jsonl and rewrite metrics.csv from all records."""
        self.write_metrics(self.metrics() + [record])

    def keep_metrics(self, count: int) -> list[dict]:
        """Cut metrics.jsonl and metrics.csv back to their first ``count`` records (a resumed run's)."""
        records = self.metrics()
        if len(records) < count:
            raise GlueboxError(
                f"{self.file(METRICS_JSONL)} has {len(records)} epoch records but the checkpoint needs {count}; "
                "the run directory was changed since the checkpoint"
            )
        if len(records) > count:
            self.write_metrics(records[:count])
        return records[:count]

    def write_metrics(self, records: list[dict]) -> None:
        """metrics.jsonl and metrics.csv holding exactly ``records``."""
        lines = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write_text(self.file(METRICS_JSONL), lines)
        columns: list[str] = []
        for r in records:
            columns.extend(k for k in r if k not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in r.items()})
        atomic_write_text(self.file(METRICS_CSV), buffer.getvalue())

    def write_predictions(self, predictions: dict) -> None:
        """``validation_predictions.npz`` holding ``{split: array}`` (compressed)."""
        import numpy as np

        atomic_write(self.file(PREDICTIONS), lambda file: np.savez_compressed(file, **predictions))

    def read_predictions(self) -> dict | None:
        """``{split: array}`` from ``validation_predictions.npz``, or None when the run has none."""
        import numpy as np

        path = self.file(PREDICTIONS)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError) as error:
            raise GlueboxError(f"{path} is corrupt ({error})") from None

    def metrics(self) -> list[dict]:
        path = self.file(METRICS_JSONL)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GlueboxError(f"{path} is corrupt (not valid JSON)") from None


def open_run(path: str | Path) -> RunDirectory:
    """An existing run directory, or a one-line error."""
    run = RunDirectory(path)
    if not run.file(CONFIG).exists():
        raise GlueboxError(f"{path} is not a gluebox run directory (no {CONFIG})")
    return run
