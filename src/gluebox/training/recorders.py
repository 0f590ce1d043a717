"""The run directory's per-step and per-epoch files, written as the training loop calls them.

Each one that writes a file also keeps, in the checkpoint, how much of its file belongs
to the checkpoint; on resume it cuts the file back to that, so a resumed run's files end
up as an uninterrupted run's. Checkpoints themselves are in :mod:`gluebox.training.checkpoints`.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

from gluebox import resources
from gluebox.errors import GlueboxError
from gluebox.runs.directory import STEPS, RunDirectory, atomic_write_text, disk_full_is_an_error, fsync_folder


class StepRecorder:
    """One row per optimizer step in ``steps/metrics.csv``; throughput and memory on the progress bar.

    Rows are appended (and fsynced) at every checkpoint, every epoch end and every
    ``flush_seconds``. The checkpoint records how many rows were on disk with it. In a
    multi-process run only rank 0 writes.
    """

    COLUMNS = ("epoch", "step", "loss", "learning_rate", "perf/tokens_per_second", "perf/peak_rss_mb")
    """``perf/`` columns are measurements of this machine, not results (``gluebox compare`` ignores them)."""

    def __init__(self, run: RunDirectory, writes: bool = True, flush_seconds: float = 30.0):
        self.path = run.file(STEPS) / "metrics.csv"
        self.writes = writes
        self.flush_seconds = flush_seconds
        self.pending: list[dict] = []
        self.rows_on_disk = 0
        self._flushed_at = time.monotonic()
        self._epoch_start = time.perf_counter()
        self._tokens = 0

    def start_epoch(self) -> None:
        self._epoch_start = time.perf_counter()
        self._tokens = 0

    def record(self, epoch: int, step: int, loss: float, learning_rate: float, tokens: int) -> dict:
        """A step's row (``learning_rate`` is the one the step used); its measurements for the progress bar."""
        self._tokens += tokens
        row = {"epoch": epoch, "step": step, "loss": loss, "learning_rate": learning_rate,
               "perf/tokens_per_second": self._tokens / max(1e-9, time.perf_counter() - self._epoch_start),
               "perf/peak_rss_mb": resources.peak_rss_bytes() / 2**20}
        self.pending.append(row)
        if time.monotonic() - self._flushed_at >= self.flush_seconds:
            self.flush()
        return row

    def flush(self) -> None:
        """Append the pending rows to the file and fsync it."""
        self._flushed_at = time.monotonic()
        if not self.writes:
            self.pending = []
        if not self.pending:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.COLUMNS, lineterminator="\n")
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        if new_file:
            writer.writeheader()
        for row in self.pending:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with disk_full_is_an_error(self.path, "the rows written so far are kept"):
            with open(self.path, "a", encoding="utf-8", newline="") as file:
                file.write(buffer.getvalue())
                file.flush()
                os.fsync(file.fileno())
        if new_file:
            fsync_folder(self.path.parent)
        self.rows_on_disk += len(self.pending)
        self.pending = []

    def state_dict(self) -> dict:
        """Flushes first, so that every row up to the checkpoint is on disk with it."""
        self.flush()
        return {"rows": self.rows_on_disk}

    def load_state_dict(self, state_dict: dict) -> None:
        """Cut the file back to the rows of the checkpoint (a killed run may have written more)."""
        count = int(state_dict["rows"])
        self.rows_on_disk, self.pending = count, []
        if not self.writes:
            return
        rows = read_step_rows(self.path)
        if len(rows) < count:
            raise GlueboxError(
                f"{self.path} has {len(rows)} rows but the checkpoint needs {count}; "
                "the run directory was changed since the checkpoint"
            )
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[:count])
        atomic_write_text(self.path, buffer.getvalue())


def read_step_rows(path: Path) -> list[dict]:
    """The rows of a ``steps/metrics.csv`` (none if there is no file yet)."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


class EpochRecorder:
    """After each validation (every epoch's end, or every ``--eval_every_n_steps`` steps, and the run's last
    step), appends one record to metrics.csv and metrics.jsonl: the epoch it happened in, the optimizer
    ``step``, ``epochs_trained`` (1.5: half-way through the second epoch), the mean training loss since the
    previous record, the validation results, and the seconds since the previous record.

    In a multi-process run every process keeps the records, and rank 0 alone writes and
    prints them.
    """

    def __init__(self, run: RunDirectory, writes: bool = True):
        self.run = run
        self.writes = writes
        self.records: list[dict] = []
        self._epoch_start = time.perf_counter()
        self._seconds_before = 0.0
        """Training seconds of this epoch before a resume."""
        self._tokens = 0

    def start(self) -> None:
        """The clock runs from here (a resumed run adds the seconds before its checkpoint since the last record)."""
        self._epoch_start = time.perf_counter()

    def count(self, tokens: int) -> None:
        self._tokens += tokens

    def _seconds(self) -> float:
        return self._seconds_before + time.perf_counter() - self._epoch_start

    def record(self, epoch: int, step: int, train_loss: float, validation: dict, fabric, epochs_trained: float,
               say=print) -> dict:
        """The validation's record: written, logged and printed (``say``) by rank 0; the next one's clock
        starts at zero."""
        seconds = self._seconds()
        record = {
            "epoch": epoch,
            "step": step,
            "epochs_trained": round(epochs_trained, 6),
            "train/loss": train_loss,
            **validation,
            "perf/epoch_seconds": seconds,
            "perf/train_tokens_per_second": self._tokens / max(seconds, 1e-9),
            "perf/peak_rss_mb": resources.peak_rss_bytes() / 2**20,
        }
        self.records.append(record)
        self._seconds_before, self._tokens = 0.0, 0
        self._epoch_start = time.perf_counter()
        if not self.writes:
            return record
        self.run.append_metrics(record)
        fabric.log_dict({"train/epoch_loss": train_loss, **{k: v for k, v in record.items() if k.startswith("perf/")}},
                        step=step)
        summary = ", ".join(f"{k} {v:.4f}" for k, v in record.items()
                            if isinstance(v, float) and "/" in k and not k.startswith("perf/"))
        where = (f"epoch {epoch}" if epochs_trained == epoch
                 else f"step {step} (epoch {record['epochs_trained']:.2f})")
        say(f"{where}: {summary} | {record['perf/epoch_seconds']:.0f} s, "
            f"{record['perf/train_tokens_per_second']:.0f} tok/s, peak RSS {record['perf/peak_rss_mb']:.0f} MB")
        return record

    def state_dict(self) -> dict:
        return {"records": len(self.records), "epoch_seconds": self._seconds(), "epoch_tokens": self._tokens}

    def load_state_dict(self, state_dict: dict) -> None:
        """Keep the records of the checkpoint's epochs and drop any a killed run wrote after it."""
        count = int(state_dict["records"])
        self.records = self.run.keep_metrics(count) if self.writes else self.run.metrics()[:count]
        self._seconds_before = float(state_dict.get("epoch_seconds", 0.0))
        self._tokens = int(state_dict.get("epoch_tokens", 0))
