"""The suite's plan, printed before it starts: each task's examples, estimated time and memory.

The time is an estimate for this machine, from a matrix-multiply probe (a second or less) and
the model's size, as :func:`gluebox.training.eta.training_seconds` makes it for ``gluebox train``
(useful work at the share of the probe's speed that training reaches, plus a fixed cost per step).
Token counts come from a tokenized sample of each split; the longest sequence (for the memory
plan) from its longest texts. The memory plan is :func:`gluebox.training.memory.plan`'s, as
``gluebox train`` will make it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from gluebox.errors import GlueboxError
from gluebox.suite.spec import Suite
from gluebox.tasks import GLUE_TASKS
from gluebox.training.eta import MatmulSpeeds, duration, matmul_speeds, precision_hint, training_seconds

SAMPLE = 512
"""Examples tokenized to estimate a split's mean length."""
LONGEST_CANDIDATES = 32
"""Longest texts (in characters) tokenized to find the longest sequence."""
DAY = 86400.0


@dataclass
class TaskPlan:
    task: str
    train: int
    validation: dict[str, int]
    test: dict[str, int]
    """Rows to predict, by submission file name (MNLI's two, and AX with MNLI)."""
    epochs: int
    batch_size: int
    steps: int
    mean_tokens: float
    longest: int
    seconds: float
    peak_bytes: int
    memory: str
    state: str = "to run"
    """``to run``, ``resume`` or ``complete`` (a complete run is skipped)."""
    time_budget: float | None = None
    """The task's ``--time_budget`` in seconds: its share of the suite's (:func:`share_time`), or its own."""


@dataclass
class SuitePlan:
    tasks: list[TaskPlan] = field(default_factory=list)
    gflops: float = 0.0
    """Matrix-multiply speed in the suite's precision (bfloat16 under bf16-mixed, else float32)."""
    threads: int = 1
    precision: str = "32"
    bf16_gflops: float = 0.0
    float32_gflops: float = 0.0
    hint: str | None = None
    """:func:`~gluebox.training.eta.precision_hint`'s line for the suite, if any."""

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tasks if t.state != "complete")

    def to_dict(self) -> dict:
        return {"gflops": self.gflops, "float32_gflops": self.float32_gflops, "bf16_gflops": self.bf16_gflops,
                "precision": self.precision, "threads": self.threads, "seconds": self.seconds,
                "tasks": [asdict(t) for t in self.tasks]}

    def describe(self) -> str:
        budgets = any(t.time_budget is not None for t in self.tasks)
        header = ["task", "state", "train", "validation", "test", "epochs", "steps", "est. time",
                  *(["time budget"] if budgets else []), "memory plan"]
        rows = []
        for t in self.tasks:
            test = " + ".join(f"{n:,}" for f, n in t.test.items() if f != "AX.tsv")
            if "AX.tsv" in t.test:
                test += f", AX {t.test['AX.tsv']:,}"
            rows.append([t.task, t.state, f"{t.train:,}", " + ".join(f"{n:,}" for n in t.validation.values()), test,
                         str(t.epochs), f"{t.steps:,}", "-" if t.state == "complete" else duration(t.seconds),
                         *([duration(t.time_budget) if t.time_budget is not None else "-"] if budgets else []),
                         t.memory])
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
        kind = "bfloat16" if self.precision == "bf16-mixed" else "float32"
        lines.append(f"  total: about {duration(self.seconds)} on this machine ({self.threads} thread(s), "
                     f"{kind} matrix multiply at {self.gflops:.0f} GFLOP/s)")
        if self.hint:
            lines.append("  " + self.hint)
        if self.seconds > DAY:
            big = sorted((t for t in self.tasks if t.state != "complete"), key=lambda t: -t.seconds)[:2]
            names = " and ".join(f"{t.task} ({duration(t.seconds)}, {t.train:,} training examples)" for t in big)
            lines.append(f"WARNING: the suite would take about {self.seconds / DAY:.1f} days on this machine, most of "
                         f"it {names}; leave tasks out with --tasks, cut them with --max_train_samples, or run on a "
                         "Ray cluster with --address")
        return "\n".join(lines)


def share_time(plan: SuitePlan, budget: float, own: dict[str, float]) -> dict[str, float]:
    """``gluebox glue --time_budget``: each task's ``--time_budget``, the suite's ``budget`` shared among the tasks
    to run by their planned cost (the plan's estimated seconds), after the tasks with their own (``own``, from
    ``--overrides``) took theirs. Each run then plans the steps that fit its share."""
    shared = budget - sum(own.values())
    sharing = [t for t in plan.tasks if t.state != "complete" and t.task not in own]
    if sharing and shared <= 0:
        raise GlueboxError(f"--time_budget {duration(budget)}: the tasks' own --time_budget overrides take "
                           f"{duration(sum(own.values()))}, leaving nothing for {', '.join(t.task for t in sharing)}")
    cost = sum(max(t.seconds, 1e-9) for t in sharing)
    shares = {t.task: shared * max(t.seconds, 1e-9) / cost for t in sharing} | own
    for t in plan.tasks:
        t.time_budget = shares.get(t.task)
    return shares


def estimate_seconds(non_embedding: int, parameters: int, layers: int, gflops: float, epochs: int, steps: int,
                     train_tokens: float, validation_tokens: float, test_tokens: float, precision: str = "32") -> float:
    """Training (``steps`` over all epochs), validation after every epoch, and the test predictions of one task."""
    return training_seconds(non_embedding, parameters, layers, gflops, steps, epochs * train_tokens,
                            epochs * validation_tokens + test_tokens, precision=precision)


def token_stats(examples, tokenizer, max_seq_length: int, seed: int = 0) -> tuple[float, int]:
    """Mean tokens per example (from a sample) and the longest sequence (from the longest texts)."""
    from gluebox.data.encoding import encode
    from gluebox.data.examples import Examples

    n = len(examples)
    if n == 0:
        return 0.0, 1
    rng = random.Random(seed)
    sample = rng.sample(range(n), min(n, SAMPLE))

    def chars(i: int) -> int:
        return len(examples.text_a[i]) + (len(examples.text_b[i]) if examples.text_b is not None else 0)

    longest = sorted(range(n), key=chars)[-LONGEST_CANDIDATES:] if n > SAMPLE else []

    def subset(indices):
        return Examples([examples.text_a[i] for i in indices],
                        None if examples.text_b is None else [examples.text_b[i] for i in indices],
                        None, [examples.ids[i] for i in indices], examples.source)

    lengths = encode(subset(sample), tokenizer, max_seq_length, False).lengths
    top = int(lengths.max())
    if longest:
        top = max(top, int(encode(subset(longest), tokenizer, max_seq_length, False).lengths.max()))
    return float(lengths.mean()), top


def _model_size(config):
    """Parameters, trained parameters, non-embedding parameters and the config of ``config``'s model.

    The model is built on the meta device, with LoRA's adapters when ``config.peft`` asks for them,
    so that the memory plan knows the smaller optimizer state as ``train``'s does.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    from gluebox.training.pretrained import load_config

    model_config = load_config(config.model_name_or_path, GLUE_TASKS["mrpc"], config.dropout_rate)
    try:
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(model_config)
    except Exception as error:  # noqa: BLE001 - a config transformers cannot build a model from
        raise GlueboxError(f"cannot build a model from {config.model_name_or_path}: {str(error).splitlines()[0]}") from None
    embedding = sum(p.numel() for name, p in model.named_parameters() if "embeddings" in name)
    base = sum(p.numel() for p in model.parameters())
    if config.peft == "lora":
        from gluebox.training.adapters import add_lora

        with torch.device("meta"):
            model = add_lora(model, config)
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return parameters, trainable, max(1, base - embedding), model_config


def make_plan(suite: Suite, states: dict[str, str]) -> SuitePlan:
    """Read every task's data (not for complete runs), count and sample it, and plan time and memory.

    Reading everything first also means a missing or malformed file is a one-line error before
    the suite starts.
    """
    from gluebox.config import TrainConfig
    from gluebox.data.sources import load_split
    from gluebox.resources import available_cpus
    from gluebox.training import memory
    from gluebox.training.pretrained import load_tokenizer

    first = suite.config(suite.tasks[0])
    tokenizer = load_tokenizer(first.model_name_or_path)
    parameters, trainable, non_embedding, model_config = _model_size(first)
    threads = first.num_threads or available_cpus()
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        speeds: MatmulSpeeds = matmul_speeds()
    finally:
        torch.set_num_threads(previous)
    from gluebox.training.hardware import device_name

    plan = SuitePlan(gflops=speeds.for_precision(first.precision), threads=threads, precision=first.precision,
                     bf16_gflops=speeds.bfloat16, float32_gflops=speeds.float32,
                     hint=precision_hint(speeds, first.precision, device_name(first.accelerator),
                                         portable=first.reproducibility != "fast"))
    for name in suite.tasks:
        config = suite.config(name)
        task = GLUE_TASKS[name]
        state = states.get(name, "to run")
        if state == "complete":
            plan.tasks.append(TaskPlan(name, 0, {}, {}, config.epochs, config.train_batch_size, 0, 0.0, 0, 0.0, 0,
                                       "-", state))
            continue
        train = load_split(config, task, "train").head(config.max_train_samples)
        validation = {s: load_split(config, task, s).head(config.max_eval_samples) for s in task.validation_splits}
        tests = {file: load_split(config, task, split) for split, file in task.submission_files.items()}
        if name == "mnli" and suite.ax:
            ax_config = TrainConfig(**(config.to_dict() | {"task_name": "ax"}))
            tests["AX.tsv"] = load_split(ax_config, GLUE_TASKS["ax"], "test")
        mean, longest = token_stats(train, tokenizer, config.max_seq_length, config.seed)
        longest = config.pad_width(longest)
        if config.padding == "max_length":
            mean = float(config.max_seq_length)
        steps = config.epochs * -(-len(train) // config.train_batch_size)
        seconds = estimate_seconds(
            non_embedding, parameters, memory.model_shape(model_config)[1], plan.gflops, config.epochs, steps, mean * len(train),
            mean * sum(len(v) for v in validation.values()), mean * sum(len(v) for v in tests.values()),
            config.precision)
        memory_plan = memory.plan(config.train_batch_size, config.micro_batch_size, config.memory_budget, parameters,
                                  model_config, longest, config.recomputes, trainable_parameters=trainable,
                                  release_memory=config.release_memory, micro_batch_tokens=config.token_cap)
        text = f"peak {memory_plan.estimated_peak_bytes / 1e9:.2f} GB, "
        text += (f"micro-batches of at most {memory_plan.micro_batch_tokens} tokens" if memory_plan.micro_batch_tokens
                 else "whole batches")
        if memory_plan.over_budget:
            text += " (OVER BUDGET: the task will be refused)"
        plan.tasks.append(TaskPlan(name, len(train), {s: len(v) for s, v in validation.items()},
                                   {f: len(v) for f, v in tests.items()}, config.epochs, config.train_batch_size, steps,
                                   mean, longest, seconds, memory_plan.estimated_peak_bytes, text, state))
        del train, validation, tests
    return plan
