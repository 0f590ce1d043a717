"""The training recipe, top to bottom: data, model, run directory, Lightning, summary.

All checks of the user's input run before the run directory is created, so bad input
never leaves a half-written run behind.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gluebox.config import TrainConfig
from gluebox.errors import GlueboxError, RunStopped
from gluebox.runs.directory import CHECKPOINTS, ENVIRONMENT, MEMORY_PLAN, SUMMARY, TASK, RunDirectory

if TYPE_CHECKING:
    from gluebox.recipe.resume import Resume


def default_run_path(config: TrainConfig) -> Path:
    """``$GLUEBOX_RUNS_DIR`` (or ``runs``) / ``<task>-<model>-<yyyymmdd-hhmmss>``."""
    parent = Path(os.environ.get("GLUEBOX_RUNS_DIR", "runs"))
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(config.model_name_or_path.rstrip("/")).name) or "model"
    stem = f"{config.task_name}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = parent / stem, 1
    while path.exists():
        n += 1
        path = parent / f"{stem}-{n}"
    return path


def train(config: TrainConfig, resume: "Resume | None" = None, callbacks: Sequence = ()) -> RunDirectory:
    """Fine-tune ``config.model_name_or_path`` on the task and write a complete run directory.

    With ``resume``, continue that unfinished run from its last checkpoint instead.

    In a multi-process run every process runs this function; rank 0 alone checks, creates and
    writes the run directory, and the others return the same :class:`RunDirectory` once
    training ends. ``callbacks`` are extra Lightning callbacks (``gluebox sweep`` reports each
    epoch to Ray Tune with one); a callback that ends the run on purpose marks it ``stopped``
    and raises :class:`RunStopped`, which passes through unchanged.
    """
    started = time.time()
    config.validate()
    from gluebox.training.quiet import quiet_libraries

    quiet_libraries()
    from gluebox.training import memory
    from gluebox.training.distributed import launcher_rank, threads_per_process

    # Rank 0 checks now, before any work; the other ranks never touch the run directory.
    expected_rank = launcher_rank(config.devices)
    if resume is None:
        path = config.output_dir or default_run_path(config)
        run = (RunDirectory.check_new(path, config.overwrite, config.checkpoint_dir)
               if expected_rank == 0 else RunDirectory(path))
        config.output_dir = str(run.path)
        memory.preflight(config)
    else:
        run = resume.run

    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from gluebox.training.recorders import BestModelExporter, DistributedRun, EpochRecorder, StepRecorder
    from gluebox.training.checkpoints import AtomicCheckpointIO, BatchOrder, LastCheckpoint, RandomState
    from gluebox.data.batching import Collator, TrainBatchSampler, TrainCollator
    from gluebox.data.encoding import encode
    from gluebox.data.sources import load_split, resolve_task
    from gluebox.data.sharding import ShardSampler
    from gluebox.runs.environment import describe
    from gluebox.errors import RunInterrupted
    from gluebox.training.hardware import configure_threads, device_name
    from gluebox.training.pretrained import check_tokenizer_fits, load_model, load_tokenizer
    from gluebox.training.classifier import GlueClassifier, OptimConfig
    from gluebox.recipe.resume import LAST_CHECKPOINT
    from gluebox.training.signals import StopRequest
    from gluebox.training.tracking import wandb_logger

    threads = configure_threads(resume.threads if resume is not None
                                else threads_per_process(config.num_threads, config.devices))
    L.seed_everything(config.seed, workers=True, verbose=False)

    # 1. Data: read and tokenize every split now, so that bad rows fail before anything is written.
    task = resolve_task(config)
    if resume is not None and task.to_dict() != run.read_json(TASK):
        raise GlueboxError(f"cannot resume {run.path}: its data now gives other labels or columns than {TASK} says")
    tokenizer = load_tokenizer(config.model_name_or_path)
    examples = {"train": load_split(config, task, "train").head(config.max_train_samples)}
    for split in task.validation_splits:
        examples[split] = load_split(config, task, split).head(config.max_eval_samples)
    encoded = {name: encode(ex, tokenizer, config.max_seq_length, task.is_regression) for name, ex in examples.items()}

    # 2. Model, with the task's head and our dropout rate, in train mode; the memory plan (a resumed run keeps its own).
    model = load_model(config.model_name_or_path, task, config.dropout_rate, config.max_seq_length)
    check_tokenizer_fits(tokenizer, model, config.model_name_or_path)
    if resume is None:
        plan = memory.plan(
            config.train_batch_size,
            config.micro_batch_size,
            config.memory_budget,
            sum(p.numel() for p in model.parameters()),
            model.config,
            int(encoded["train"].lengths.max()) if config.padding == "dynamic" else config.max_seq_length,
        )
        if plan.over_budget:
            memory.refuse_if_over(plan.estimated_peak_bytes, plan.budget_bytes, plan.budget_source)
    else:
        plan = memory.MemoryPlan(**resume.memory_plan)
        budget, source = memory.available_budget(config.memory_budget)
        memory.refuse_if_over(plan.estimated_peak_bytes, budget, source, resumed=True)
    if plan.returns_freed_memory:
        from gluebox.training.allocator import return_freed_memory_to_os

        return_freed_memory_to_os()

    # 3. Lightning: loaders, callbacks, trainer. Every process sees the same global batches and
    #    takes its share of each (TrainCollator); validation is sharded without padding.
    from torch.utils.data import DataLoader

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    pad_to = config.max_seq_length if config.padding == "max_length" else None
    train_split = encoded["train"]
    import torch

    batch_sampler = TrainBatchSampler(train_split.lengths, config.train_batch_size, config.seed, config.group_by_length)
    train_loader = DataLoader(
        train_split,
        batch_sampler=batch_sampler,
        collate_fn=TrainCollator(train_split, pad_id, pad_to, plan.micro_batch_size, plan.micro_batch_tokens),
        # Its own generator (only used to seed workers): making an iterator then draws nothing from the
        # global generator that dropout uses, so a checkpoint's random state is the next step's.
        generator=torch.Generator().manual_seed(config.seed),
    )
    val_loaders = [
        DataLoader(encoded[s], batch_size=config.eval_batch_size, sampler=ShardSampler(len(encoded[s]), config.eval_batch_size),
                   collate_fn=Collator(encoded[s], pad_id, pad_to))
        for s in task.validation_splits
    ]
    monitor = f"{task.validation_splits[0]}/{task.main_metric}"
    checkpoint_dir = Path(config.checkpoint_dir or run.file(CHECKPOINTS))
    last_checkpoint = checkpoint_dir / LAST_CHECKPOINT
    recorder = EpochRecorder(run)
    stop = StopRequest()
    all_callbacks = [
        DistributedRun(run, config.seed),
        LastCheckpoint(last_checkpoint, config.checkpoint_every_n_steps, config.checkpoint_every_minutes, stop),
        BatchOrder(batch_sampler),
        StepRecorder(run),
        recorder,
        RandomState(),
        BestModelExporter(run, tokenizer, monitor, checkpoint_dir / "best.ckpt"),
        *callbacks,
    ]
    logger = wandb_logger(config, run.path, run.path.name)
    try:
        trainer = L.Trainer(
            accelerator=config.accelerator,
            devices=config.devices,
            num_nodes=config.num_nodes,
            strategy=config.strategy,
            max_epochs=config.epochs,
            deterministic=True,
            logger=[logger] if logger is not None else False,
            callbacks=all_callbacks,
            default_root_dir=run.path,
            num_sanity_val_steps=0,
            enable_progress_bar=config.progress_bar,
            enable_model_summary=False,
            use_distributed_sampler=False,
            log_every_n_steps=1,
            plugins=[AtomicCheckpointIO()],
        )
    except (ValueError, MisconfigurationException) as error:
        raise GlueboxError(f"cannot set up training: {error}") from None
    module = GlueClassifier(
        model,
        task,
        list(task.validation_splits),
        OptimConfig(config.learning_rate, config.weight_decay, config.adam_epsilon, config.warmup_steps, config.gradient_clip_val),
    )
    if trainer.world_size > 1:
        for split in task.validation_splits:
            batches = -(-len(encoded[split]) // config.eval_batch_size)
            if batches < trainer.world_size:
                raise GlueboxError(
                    f"{split} has {len(encoded[split])} examples: {batches} batch(es) of --eval_batch_size "
                    f"{config.eval_batch_size} for {trainer.world_size} processes, and each process needs one; "
                    "lower --eval_batch_size or run fewer processes"
                )

    # 4. The run directory, written by rank 0 only: from here on the run exists, marked
    #    "running" until it completes.
    device = device_name(config.accelerator)
    if trainer.is_global_zero:
        print(plan.describe(), flush=True)
        if trainer.world_size > 1:
            print(f"{trainer.world_size} processes ({config.num_nodes} node(s) x {config.devices}), "
                  f"strategy {type(trainer.strategy).__name__}; rank 0 writes {run.path}", flush=True)
        if resume is None:
            if expected_rank != 0:
                RunDirectory.check_new(run.path, config.overwrite, config.checkpoint_dir)
            run.create(config.overwrite)
            stop.install()
            run.write_config(config.to_dict())
            run.write_json(TASK, task.to_dict())
            run.write_json(MEMORY_PLAN, plan.to_dict())
            run.write_json(ENVIRONMENT, describe(device) | {"torch_threads": threads, "processes": trainer.world_size})
        else:
            run.reopen()
            stop.install()
            run.write_config(config.to_dict())  # with this session's harmless flags (a new --checkpoint_dir)
            print(f"resuming {run.path} from {resume.checkpoint}", flush=True)
        if logger is not None:
            logger.log_hyperparams(config.to_dict() | {"task": task.to_dict(), "memory_plan": plan.to_dict()})

    # 5. Train, validating after every epoch; a stop signal ends it after a checkpoint.
    lead = trainer.is_global_zero
    try:
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loaders,
                    ckpt_path=resume.checkpoint if resume is not None else None)
    except RunStopped:
        raise
    except RunInterrupted as interruption:
        if lead:
            run.try_set_status("interrupted", signal=interruption.signal_name,
                               epochs_completed=len(recorder.records), step=trainer.global_step)
        advice = (f"resume with `gluebox train --resume {run.path}`" if last_checkpoint.exists()
                  else f"no checkpoint was saved yet; start again with --overwrite")
        raise RunInterrupted(f"{interruption}; {advice}", interruption.signum) from None
    except BaseException as error:
        if lead:
            run.try_set_status("failed", error=type(error).__name__)
        raise
    finally:
        stop.uninstall()
    if not trainer.is_global_zero:
        return run
    # What rank 0 wrote (under ddp_spawn, training ran in other processes than this one).
    records = run.metrics()
    if trainer.interrupted or len(records) < config.epochs:
        run.set_status("interrupted", epochs_completed=len(records))
        raise GlueboxError(f"training was interrupted after {len(records)} epoch(s); {run.path} is incomplete")

    # 6. Summary: final and best metrics, fingerprint, time and memory.
    summary = build_summary(records, task, monitor, config, plan, encoded["train"], started, device, threads)
    summary["steps"] = records[-1]["step"]
    summary["processes"] = trainer.world_size
    run.write_json(SUMMARY, summary)
    if logger is not None:
        logger.experiment.summary.update({k: v for k, v in summary.items() if not isinstance(v, dict)})
        logger.finalize("success")
        import wandb

        wandb.finish()
    run.set_status("complete", wall_time_seconds=summary["wall_time_seconds"])
    final = ", ".join(f"{k} {v:.4f}" for k, v in summary["final"].items() if isinstance(v, float))
    print(f"run complete: {run.path} ({final})", flush=True)
    return run


def build_summary(records, task, monitor, config, plan, train_split, started, device, threads) -> dict:
    from gluebox import resources

    def metrics_only(record: dict) -> dict:
        return {k: v for k, v in record.items() if not k.startswith("perf/")}

    best = records[0]
    for record in records[1:]:
        if record[monitor] > best[monitor]:
            best = record
    fingerprint_key = f"{task.validation_splits[0]}/fingerprint"
    return {
        "status": "complete",
        "task": task.name,
        "model": config.model_name_or_path,
        "seed": config.seed,
        "epochs": len(records),
        "main_metric": monitor,
        "final": metrics_only(records[-1]),
        "best_epoch": best["epoch"],
        "best": metrics_only(best),
        "fingerprint": records[-1][fingerprint_key],
        "best_fingerprint": best[fingerprint_key],
        "wall_time_seconds": time.time() - started,
        "train_seconds": sum(r["perf/epoch_seconds"] for r in records),
        "peak_rss_mb": resources.peak_rss_bytes() / 2**20,
        "train_examples": len(train_split),
        "train_tokens_per_epoch": train_split.num_tokens,
        "memory_plan": plan.to_dict(),
        "device": device,
        "torch_threads": threads,
    }
