"""Build a run's parts from its config: data, model, memory plan, loaders and optimizer settings.

One function, :func:`build`, used by ``gluebox train`` (new and resumed runs), sweep trials
and the benchmark, so that they all train the same thing. It reads and tokenizes every split
before anything is written, so bad rows fail first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gluebox.config import TrainConfig
from gluebox.errors import GlueboxError

if TYPE_CHECKING:
    from gluebox.recipe.resume import Resume


@dataclass
class Recipe:
    """Everything a run trains with, ready for :func:`gluebox.training.loop.fit`."""

    config: TrainConfig
    task: Any
    tokenizer: Any
    encoded: dict[str, Any]
    """Every split, tokenized once: ``train`` and the task's validation splits."""
    model: Any
    plan: Any
    """The :class:`~gluebox.training.memory.MemoryPlan`: micro-batches that fit the budget."""
    batch_sampler: Any
    """The seeded, length-grouped order of training batches (its epoch and place are checkpointed)."""
    train_collator: Any
    train_loader: Any
    val_loaders: list
    optim: Any
    """The :class:`~gluebox.training.classifier.OptimConfig`: AdamW, schedule and clipping."""
    threads: int
    data: dict
    """What identifies each split's data (:func:`gluebox.data.identity.data_identity`), for environment.json."""

    @property
    def monitor(self):
        """The :class:`~gluebox.tasks.Monitor` that picks the best model (and stops early): ``--metric_for_best``,
        default the first validation split's main metric."""
        return self.task.monitor(self.config.metric_for_best)


def build(config: TrainConfig, resume: "Resume | None" = None) -> Recipe:
    """The parts of a run; a resumed run keeps its task, thread count and memory plan."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from gluebox.data.batching import Collator, TrainBatchSampler, TrainCollator
    from gluebox.data.encoding import encode
    from gluebox.data.identity import data_identity
    from gluebox.data.sharding import ShardSampler
    from gluebox.data.sources import describe_files, load_split, resolve_task
    from gluebox.training import memory
    from gluebox.training.classifier import OptimConfig
    from gluebox.training.distributed import threads_per_process
    from gluebox.training.hardware import configure_threads, deterministic
    from gluebox.tasks import task_difference
    from gluebox.training.pretrained import check_tokenizer_fits, load_model, load_tokenizer

    from gluebox.reproducibility import FAST, check_pinned

    check_pinned(config.reproducibility)
    deterministic()  # from the first kernel on (the model's new head included)
    threads = configure_threads(resume.threads if resume is not None
                                else threads_per_process(config.num_threads, config.devices))
    L.seed_everything(config.seed, workers=True, verbose=False)

    # The data first, then the tokenizer and model: the first error is about the first thing that is wrong.
    task = resolve_task(config)
    splits = {split: load_split(config, task, split) for split in ("train", *task.validation_splits)}
    if config.uses_custom_files:
        task = describe_files(task, splits)
    task.monitor(config.metric_for_best)  # a metric the task does not report: refused before the model loads
    if resume is not None:
        difference = task_difference(resume.task, task)
        if difference is not None:
            raise GlueboxError(f"cannot resume {resume.run.path}: {difference}")
    examples = {split: data.head(config.max_train_samples if split == "train" else config.max_eval_samples)
                for split, data in splits.items()}
    data = data_identity(task.name, {name: split.source for name, split in examples.items()})
    tokenizer = load_tokenizer(config.model_name_or_path)
    encoded = {name: encode(ex, tokenizer, config.max_seq_length, task.is_regression) for name, ex in examples.items()}

    # The model, with the task's head and our dropout rate, in train mode (its new head draws from the seeded generator).
    model = load_model(config.model_name_or_path, task, config.dropout_rate, config.max_seq_length)
    check_tokenizer_fits(tokenizer, model, config.model_name_or_path)
    if config.recomputes:
        from gluebox.training.lean import make_lean

        make_lean(model)
    model_config = model.config
    if config.peft == "lora":  # frozen weights, trainable adapters and head (their A matrices draw from the seed)
        from gluebox.training.adapters import add_lora

        model = add_lora(model, config)
    if resume is None:
        longest = config.pad_width(int(encoded["train"].lengths.max()))
        plan = memory.plan(config.train_batch_size, config.micro_batch_size, config.memory_budget,
                           sum(p.numel() for p in model.parameters()), model_config, longest, config.recomputes,
                           trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                           release_memory=config.release_memory, micro_batch_tokens=config.token_cap)
        if plan.over_budget:
            memory.refuse_if_over(plan.estimated_peak_bytes, plan.budget_bytes, plan.budget_source,
                                  lora=memory.lora_alternative(config, model_config, longest))
    else:
        plan = resume.memory_plan
        budget, source = memory.available_budget(config.memory_budget)
        memory.refuse_if_over(plan.estimated_peak_bytes, budget, source, resumed=True)
    if plan.returns_freed_memory:
        from gluebox.allocator import return_freed_memory_to_os

        return_freed_memory_to_os()

    # Every process sees the same global batches and takes its share of each (TrainCollator);
    # validation is sharded into whole batches without padding (ShardSampler).
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_split = encoded["train"]
    batch_sampler = TrainBatchSampler(train_split.lengths, config.train_batch_size, config.seed, config.group_by_length)
    train_collator = TrainCollator(train_split, pad_id, config.pad_width, plan.micro_batch_size, plan.micro_batch_tokens)
    train_loader = DataLoader(
        train_split, batch_sampler=batch_sampler, collate_fn=train_collator,
        # Its own generator (only used to seed workers): making an iterator then draws nothing from the
        # global generator that dropout uses, so a checkpoint's random state is the next step's.
        generator=torch.Generator().manual_seed(config.seed),
    )
    val_loaders = [
        DataLoader(encoded[s], batch_size=config.eval_batch_size, sampler=ShardSampler(len(encoded[s]), config.eval_batch_size),
                   collate_fn=Collator(encoded[s], pad_id, config.pad_width))
        for s in task.validation_splits
    ]
    optim = OptimConfig(config.learning_rate, config.weight_decay, config.adam_epsilon, config.warmup_steps,
                        config.gradient_clip_val,
                        fused=config.precision != "16-mixed" and config.reproducibility == FAST,
                        for_loop=config.reproducibility != FAST,
                        lr_scheduler=config.lr_scheduler, warmup_ratio=config.warmup_ratio)
    return Recipe(config, task, tokenizer, encoded, model, plan, batch_sampler, train_collator, train_loader,
                  val_loaders, optim, threads, data)
