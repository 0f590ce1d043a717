"""Lightning callbacks that write the run directory and report throughput and memory."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from gluebox import resources
from gluebox.distributed import rank_seed
from gluebox.run_dir import BEST_MODEL, RunDirectory, temp_file_beside


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint to a temporary file beside it, then renames it into place.

    A kill during a save leaves the previous checkpoint intact under its name. Saving
    straight to a file also avoids Lightning's in-memory copy of the whole checkpoint.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        tmp = temp_file_beside(path)
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class EpochRecorder(L.Callback):
    """After each epoch's validation, appends one record to metrics.csv and metrics.jsonl.

    Also shows throughput (real tokens per second, of all processes) and peak memory on the
    progress bar. In a multi-process run every process keeps the records, and rank 0 alone
    writes and prints them.
    """

    def __init__(self, run: RunDirectory):
        self.run = run
        self.records: list[dict] = []
        self._epoch_start = 0.0
        self._tokens = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()
        self._tokens = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._tokens += batch.num_tokens
        elapsed = max(1e-9, time.perf_counter() - self._epoch_start)
        pl_module.log("tok/s", self._tokens / elapsed, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)
        pl_module.log("peak_mb", resources.peak_rss_bytes() / 2**20, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._epoch_start
        record = {
            "epoch": trainer.current_epoch + 1,
            "step": trainer.global_step,
            "train/loss": pl_module.train_loss,
            **pl_module.last_validation,
            "perf/epoch_seconds": seconds,
            "perf/train_tokens_per_second": self._tokens / max(seconds, 1e-9),
            "perf/peak_rss_mb": resources.peak_rss_bytes() / 2**20,
        }
        self.records.append(record)
        if not trainer.is_global_zero:
            return
        self.run.append_metrics(record)
        for logger in trainer.loggers:
            logger.log_metrics(
                {"train/epoch_loss": record["train/loss"], **{k: v for k, v in record.items() if k.startswith("perf/")}},
                step=trainer.global_step,
            )
        summary = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float) and not k.startswith("perf/"))
        print(
            f"epoch {record['epoch']}: {summary} | {record['perf/epoch_seconds']:.0f} s, "
            f"{record['perf/train_tokens_per_second']:.0f} tok/s, peak RSS {record['perf/peak_rss_mb']:.0f} MB",
            flush=True,
        )


class BestModelExporter(L.Callback):
    """Saves the model in Hugging Face format whenever the main metric reaches a new best (rank 0 only)."""

    def __init__(self, run: RunDirectory, tokenizer, monitor: str):
        self.run = run
        self.tokenizer = tokenizer
        self.monitor = monitor
        self.best: float | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        value = pl_module.last_validation.get(self.monitor)
        if value is None or (self.best is not None and not value > self.best):
            return
        self.best = value
        if trainer.is_global_zero:
            export_hf_model(pl_module.model, self.tokenizer, self.run.file(BEST_MODEL))

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best")


def export_hf_model(model, tokenizer, target: Path) -> None:
    """``save_pretrained`` of model and tokenizer into ``target``, swapped in by renames."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class DistributedRun(L.Callback):
    """Once the process group is up: agree on rank 0's run directory, and seed dropout per rank.

    Every process computes a run path before the processes can talk (the default path holds
    the time of day, so they may differ); only rank 0 ever writes, and here the others take
    its path, so that checkpoints, messages and return values all name the same directory.
    With one process this does nothing, so single-process runs keep their random stream.
    """

    def __init__(self, run, seed: int):
        self.run = run
        self.seed = seed

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.world_size == 1:
            return
        from gluebox.commands.train import quiet_libraries

        quiet_libraries()  # processes started by ddp_spawn begin without gluebox's settings
        self.run.path = Path(trainer.strategy.broadcast(str(self.run.path), src=0))
        torch.manual_seed(rank_seed(self.seed, trainer.global_rank))
