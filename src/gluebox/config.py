"""Training configuration: one dataclass, one documented field per flag, and its layering.

Defaults follow the course-project script that gluebox grows out of (see docs/cli.md for
the few that changed and why). Values come in layers, later ones winning: the defaults
here, ``GLUEBOX_*`` environment variables (:func:`environment_values`), a YAML file
(``--config run.yaml``) and the command line (:func:`resolve`); a resumed run starts from
its saved ``config.yaml`` instead, and takes only the flags that cannot change its results
(:func:`resume_config`).

Each flag's properties live on its field, so a new flag is one field:

- ``help``, ``choices``, ``aliases``: its ``--help`` line and accepted spellings;
- ``env``: an environment variable that replaces its default;
- ``resumable``: it may take a new value on ``--resume`` (nothing it does touches the maths);
- ``fixed_by_sweep``: a sweep sets it for each trial, so a sweep file may not;
- ``parse``: how a text value becomes the typed value (e.g. ``2GB`` -> bytes). Values are
  parsed once, when the config is made, whatever layer they came from;
- ``path``: a file or folder; ``config.yaml`` stores it absolute (:func:`absolute_paths`), so that a
  run resumed from another folder reads and writes the same files.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gluebox import allocator, reproducibility
from gluebox.errors import GlueboxError
from gluebox.tasks import GLUE_TASK_NAMES

DEFAULT_TASK = "mrpc"
"""The GLUE task of a run that names neither a task nor data files (the course project's)."""
PEFT_METHODS = ("none", "lora")
"""--peft: full fine-tuning, or LoRA adapters through the peft library."""
DEFAULT_TOKEN_CAP = {"none": 2048, "lora": 1024}
"""``--micro_batch_tokens``'s default: DistilBERT on MRPC, whole epoch, mimalloc (docs/small-machines.md):
full fine-tuning peaked at 2194 MiB with 2048 and 2093 MiB with 1024 (1.02x the time); LoRA (with adapter
dropout 0.1, as then) at 1470 MiB with 2048 and 1213 MiB with 1024 (1.04x the time)."""
DEFAULT_RECOMPUTE = {"none": True, "lora": False}
"""``--recompute``'s default: DistilBERT on MRPC, whole epoch each, the ways taking turns (docs/performance.md, LoRA):
LoRA without it took 0.94x the time for 1219 MiB against 1157 (0.67x full fine-tuning's time)."""
LORA_FLAGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
"""Flags that only mean something with --peft lora."""

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
"""--lr_scheduler: names of transformers' get_scheduler."""
DEFAULT_WARMUP_STEPS = 50
"""--warmup_steps's default when --warmup_ratio is not given (the course project's)."""

STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")
"""Lightning strategies gluebox supports: one process per device, each with the whole model (DDP).

Not ``ddp_spawn``: it pickles the model and data into processes it starts, and Lightning's spawn
launcher refuses gluebox's frozen dataclasses; ``ddp`` trains the same way from processes that run
the same command."""


def _arg(default: Any, help: str, *, choices: tuple[str, ...] | None = None, aliases: tuple[str, ...] = (),
         env: str | None = None, resumable: bool = False, fixed_by_sweep: bool = False,
         parse: "Callable[[Any], Any] | None" = None, path: bool = False) -> Any:
    """A dataclass field with the flag's properties (see the module docstring)."""
    return field(default=default, metadata={
        "help": help, "choices": choices, "aliases": aliases, "env": env, "resumable": resumable,
        "fixed_by_sweep": fixed_by_sweep, "parse": parse, "path": path,
    })


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bytes(text: str | int) -> int:
    """``"2GB"`` -> 2_000_000_000; ``"1.5GiB"`` -> 1_610_612_736; a bare number is bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise GlueboxError(f"cannot read memory size '{text}'; write it like 2GB, 1500MB or 1.5GiB")
    number, unit = match.groups()
    unit = (unit or "").lower().rstrip("b")
    return int(float(number) * _UNITS[unit])


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?)?\s*$",
                       re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | float) -> float:
    """``"30m"`` -> 1800.0; ``"90s"``, ``"2h"``, ``"1.5h"``; a bare number is seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise GlueboxError(f"cannot read duration '{text}'; write it like 90s, 30m or 2h")
    number, unit = match.groups()
    return float(number) * _DURATION_UNITS[(unit or "s")[0].lower()]


def parse_names(text: str | None) -> str | None:
    """``"query, value"`` -> ``"query,value"``: a comma-separated list of names, blanks removed."""
    if text is None:
        return None
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if not names:
        raise GlueboxError(f"cannot read the list of names '{text}'; write it like query,value")
    return ",".join(names)


def parse_column(name: str | None) -> str | None:
    """A column name; ``none`` (any case) means no column."""
    return None if name is None or str(name).lower() == "none" else str(name)


MIXED_PRECISIONS = ("bf16-mixed", "16-mixed")
"""The ``--precision`` values that train under autocast (the others: ``32``)."""

@dataclass
class TrainConfig:
    """Everything that defines a training run. Each field is a ``gluebox train`` flag."""

    # What to train.
    model_name_or_path: str = _arg(
        "distilbert-base-uncased",
        "Hugging Face model id or local directory that AutoModelForSequenceClassification loads.",
        env="GLUEBOX_MODEL",
    )
    task_name: str | None = _arg(
        None,
        "GLUE task (default: mrpc). With your own data (--train_file): the task's name, default the training "
        "file's name; a GLUE task's name there means your files hold that GLUE task (its labels and metrics).",
        choices=GLUE_TASK_NAMES,
        env="GLUEBOX_TASK",
    )
    data_dir: str | None = _arg(
        None,
        "Folder of standard GLUE TSV files (train.tsv, dev.tsv, test.tsv). Default: the hub dataset nyu-mll/glue.",
        env="GLUEBOX_DATA_DIR",
        path=True,
    )
    train_file: str | None = _arg(None, "Your own training data: a .csv, .tsv or .jsonl file.", path=True)
    validation_file: str | None = _arg(None, "Your own validation data (same format as --train_file).", path=True)
    test_file: str | None = _arg(None, "Your own unlabelled test data, for `gluebox predict`.", path=True)
    text_column: str = _arg("sentence1", "Column of the first text in --train_file data.")
    text_pair_column: str | None = _arg(
        "sentence2", "Column of the second text in --train_file data; 'none' for single sentences.",
        parse=parse_column,
    )
    label_column: str = _arg("label", "Column of the label (or score) in --train_file data.")
    problem_type: str = _arg(
        "auto",
        "For --train_file data: classification, regression, or auto (regression when labels are non-integer numbers).",
        choices=("auto", "classification", "regression"),
    )
    max_classes: int | None = _arg(
        None,
        "For --train_file data: refuse classification into more classes than this (a --label_column that names "
        "a text or id column gives a class per row). Default: 200, and refused also when, above 20 classes, most "
        "classes have one row only.",
    )
    max_train_samples: int | None = _arg(None, "Use only the first N training examples (quick runs).")
    max_eval_samples: int | None = _arg(None, "Use only the first N examples of each validation split.")

    # The maths of the course-project script.
    learning_rate: float = _arg(2e-5, "Peak learning rate of AdamW.", aliases=("--lr",))
    weight_decay: float = _arg(0.0, "AdamW weight decay (never applied to biases and LayerNorm weights).")
    adam_epsilon: float = _arg(1e-8, "AdamW epsilon.")
    lr_scheduler: str = _arg(
        "linear",
        "The learning rate's schedule over the run's optimizer steps, from transformers' get_scheduler: linear "
        "(warmup, then linear decay to zero at the last step), cosine (warmup, then cosine decay to zero), constant "
        "(no warmup), constant_with_warmup.",
        choices=SCHEDULERS,
    )
    warmup_steps: int | None = _arg(
        None,
        f"Optimizer steps of linear warmup at the start of the schedule. Default: {DEFAULT_WARMUP_STEPS}, unless "
        "--warmup_ratio is given (give one of the two).",
    )
    warmup_ratio: float | None = _arg(
        None,
        "Warmup as a share of the run's optimizer steps (0 to 1; rounded up to whole steps), instead of "
        "--warmup_steps: it follows --epochs, --max_steps and --time_budget's plan.",
    )
    dropout_rate: float = _arg(
        0.1,
        "Dropout probability set on every dropout field of the model's config: hidden layers, attention, embeddings, "
        "MLP and classification head, in every family's names (BERT's, DistilBERT's, ALBERT's, DeBERTa-v2's, "
        "ModernBERT's mlp_dropout and embedding_dropout); a head rate left unset keeps meaning the hidden rate.",
    )
    gradient_clip_val: float = _arg(1.0, "Clip the global gradient norm to this value; 0 turns clipping off.")
    train_batch_size: int = _arg(32, "Examples per optimizer step (the effective batch).")
    eval_batch_size: int = _arg(32, "Examples per evaluation batch.")
    max_seq_length: int = _arg(128, "Longest input in tokens; longer pairs are truncated.")
    epochs: int = _arg(3, "Number of training epochs; --max_steps and --time_budget may end the run sooner.",
                        aliases=("--num_epochs",))
    max_steps: int | None = _arg(
        None,
        "Train for exactly this many optimizer steps instead of --epochs (the last epoch may stop part way); "
        "the learning-rate schedule ends at that step, and the run ends with a validation.",
    )
    time_budget: float | None = _arg(
        None,
        "Finish the whole run within this much wall time, e.g. 30m, 90s or 2h: after the first steps gluebox plans "
        "the optimizer steps that fit (at most those of --epochs or --max_steps), the learning-rate schedule ends at "
        "the planned last step, and the run ends with a validation and a complete run directory inside the budget. "
        "A resumed run keeps what is left of it.",
        parse=parse_duration,
    )
    eval_every_n_steps: int | None = _arg(
        None,
        "Validate every N optimizer steps and after the last one, instead of at every epoch's end; the best model "
        "is chosen among all validations.",
    )
    metric_for_best: str | None = _arg(
        None,
        "The validation metric that picks the best model and drives early stopping, e.g. f1 or validation/loss "
        "(a loss is minimized, any other metric maximized); a metric the task does not report is a one-line error. "
        "Default: the task's main metric.",
    )
    early_stopping_patience: int | None = _arg(
        None,
        "Stop after this many validations in a row without an improvement of --metric_for_best by more than "
        "--early_stopping_min_delta; the run is complete, and summary.json says why it stopped. Default: off.",
    )
    early_stopping_min_delta: float = _arg(
        0.0, "With --early_stopping_patience: the smallest change of the metric that counts as an improvement."
    )
    seed: int = _arg(42, "Seed for weights of the new head, dropout and data order.")

    # Parameter-efficient fine-tuning (LoRA through peft).
    peft: str = _arg(
        "none",
        "none: train every weight (full fine-tuning). lora: freeze the pretrained weights and train low-rank "
        "adapters on --lora_target_modules, plus the classification head in full: gradients and AdamW state "
        "only for those (much less memory); best_model/ holds the adapters merged into the weights.",
        choices=PEFT_METHODS,
    )
    lora_r: int = _arg(8, "LoRA: rank of the adapter matrices (with --peft lora).")
    lora_alpha: float = _arg(16.0, "LoRA: scaling numerator; the adapters' output is scaled by lora_alpha / lora_r.")
    lora_dropout: float = _arg(
        0.0,
        "LoRA: dropout probability on the adapters' input. Default 0, as in peft and the LoRA paper's GLUE "
        "runs: each adapter's dropout draws its own mask over its whole input (DistilBERT on MRPC: 0.1 cost "
        "a tenth more time per epoch).",
    )
    lora_target_modules: str | None = _arg(
        None,
        "LoRA: comma-separated names of the linear layers to adapt, e.g. query,value. Default: the attention's "
        "query and value of the model's architecture (BERT-style query,value; DistilBERT q_lin,v_lin).",
        parse=parse_names,
    )

    # How batches are built (speed and memory; none of these change the maths).
    padding: str = _arg(
        "dynamic",
        "dynamic: pad each micro-batch to its longest example. max_length: pad every example to "
        "--max_seq_length, as the course project did.",
        choices=("dynamic", "max_length"),
    )
    pad_to_multiple_of: int | None = _arg(
        None,
        "With --padding dynamic, round each micro-batch's padded length up to a multiple of this (at most "
        "--max_seq_length). Default: 8 under --precision bf16-mixed or 16-mixed, 1 (no rounding) otherwise: "
        "oneDNN compiles and keeps a bfloat16 matrix-multiply kernel for every shape it meets, about 10 ms "
        "and up to a few MB each, and rounding leaves a few shapes instead of one per length "
        "(docs/performance.md). Padding is masked: the maths is the same up to rounding.",
    )
    group_by_length: bool = _arg(
        True,
        "Put examples of similar length in the same batch (seeded, deterministic). "
        "--no-group_by_length gives plain shuffled batches, as the course project did.",
    )
    micro_batch_size: int | None = _arg(
        None,
        "Examples per forward/backward pass; gradients of a batch are accumulated over micro-batches. "
        "Default: the whole batch, or what --memory_budget allows.",
    )
    micro_batch_tokens: int | None = _arg(
        None,
        "At most this many padded tokens (examples x padded length) per forward/backward pass: longer batches "
        "are split into micro-batches, shorter ones run whole: a lower peak for a little more time "
        "(docs/performance.md); the maths is that of the whole batch. 0: no cap. Default: 2048, and 1024 with "
        "--peft lora (whose peak is mostly activations). Under --memory_budget the smaller of the two caps applies.",
    )
    recompute: bool | None = _arg(
        None,
        "Recompute attention (when dropout is on) and activation-function outputs in the backward pass "
        "instead of keeping them from the forward pass: exactly the same results, about 13% less peak memory "
        "for DistilBERT (2208 against 2549 MiB over an epoch) for 3% more time. --no-recompute keeps them. "
        "Default: on, and off with --peft lora (where it saves 62 MiB for 6% more time).",
    )
    allocator: str = _arg(
        allocator.MIMALLOC,
        "The C allocator tensors come from. mimalloc (Linux): gluebox restarts itself under it; it reuses the "
        "memory that batches of varying length free instead of letting it fragment: about a fifth less peak "
        "memory than glibc's heap for DistilBERT at the same speed. system: the C library's malloc, the way "
        "before. Results are the same either way.",
        choices=allocator.ALLOCATORS,
        env=allocator.VARIABLE,
        resumable=True,
    )
    release_memory: bool = _arg(
        False,
        "Hand freed tensor memory back to the operating system at once (mimalloc: no purge delay; glibc: a fixed "
        "mmap threshold) instead of keeping it in the process for reuse: less peak memory, but slower (page "
        "faults). Always on under --memory_budget, under a container's memory limit that leaves less than 1.5x the "
        "planned peak, and with --peft lora under --allocator system. Results are the same either way.",
    )
    memory_budget: int | None = _arg(
        None,
        "Keep the run under this much memory, e.g. 2GB; gluebox picks the micro-batch size. "
        "Default: the container's memory limit when there is one.",
        parse=parse_bytes,
    )
    num_threads: int | None = _arg(
        None, "Torch CPU threads. Default: the CPUs this process may use (the container's CPU quota included); "
        "1 per process under --reproducibility portable."
    )
    reproducibility: str = _arg(
        "fast",
        "fast: this CPU's fastest kernels; runs are identical on the same machine. portable: the same numbers "
        "on every x86-64 CPU with AVX2 (Intel or AMD): AVX2 kernels, MKL's compatible path, 1 thread per process "
        "unless --num_threads is given, for-loop AdamW; slower.",
        choices=reproducibility.MODES,
        env=reproducibility.VARIABLE,
    )

    # Where things go.
    output_dir: str | None = _arg(
        None,
        "Run directory: a new or empty folder (or a gluebox run with --overwrite). Default: $GLUEBOX_RUNS_DIR "
        "(or ./runs) / <task>-<model>-<time>, with -2, -3... when a run started in the same second has it.",
        fixed_by_sweep=True,
        path=True,
    )
    checkpoint_dir: str | None = _arg(
        None, "Where checkpoints go. Default: <output_dir>/checkpoints.", resumable=True, fixed_by_sweep=True,
        path=True,
    )
    checkpoint_every_minutes: float = _arg(
        5.0,
        "Save checkpoints/last.ckpt at least this often (minutes of wall time) during an epoch, so that an "
        "interrupted run loses at most that much work; 0 turns the timer off. It is also saved at every epoch end.",
        resumable=True,
    )
    checkpoint_every_n_steps: int | None = _arg(
        None, "Also save checkpoints/last.ckpt every N optimizer steps. Neither setting changes the results.",
        resumable=True,
    )
    overwrite: bool = _arg(
        False,
        "Replace an existing gluebox run directory: only the files gluebox wrote in it go; anything else there "
        "(your notes, plots) stops it with one line that names them, before anything is deleted.",
        fixed_by_sweep=True,
    )
    accept_changes: bool = _arg(
        False,
        "With --resume: continue even though something that changes the results differs from when the run last "
        "ran (its data files, the torch, transformers or gluebox version, the accelerator, and in fast mode the "
        "CPU's instruction set or threads); environment.json records the change and `gluebox compare` names it.",
        resumable=True,
    )

    # Tracking.
    wandb_mode: str = _arg(
        "auto",
        "auto: online when a W&B API key is configured, else offline (sync later with `wandb sync`). "
        "disabled: no W&B at all.",
        choices=("auto", "online", "offline", "disabled"),
        resumable=True,
    )
    wandb_project: str = _arg("gluebox", "W&B project.", resumable=True)
    wandb_run_name: str | None = _arg(None, "W&B run name. Default: the run directory's name.", resumable=True)
    log_model: bool = _arg(False, "Upload the exported best model (best_model/) to W&B as a 'model' artifact at the end of the run "
                         "(offline runs: sent by `wandb sync`).", resumable=True)
    progress_bar: bool = _arg(True, "Show a progress bar.", resumable=True)

    # Hardware.
    accelerator: str = _arg("auto", "cpu, gpu, mps or auto.")
    devices: int = _arg(
        1,
        "Processes (devices) per node. Above 1, Lightning runs one process per device and averages "
        "gradients (DDP); under torchrun, set it to --nproc_per_node.",
        fixed_by_sweep=True,
    )
    precision: str = _arg(
        "32",
        "Numeric precision of training: 32 (float32, the course project's), bf16-mixed (bfloat16 autocast: "
        "GPUs from Ampere on, recent CPUs) or 16-mixed (float16 autocast with loss scaling: GPUs). "
        "Mixed precision changes the results' last digits; it is faster on GPUs and on CPUs with bfloat16 "
        "units (AMX), which the run's first lines point out.",
        choices=("32", *MIXED_PRECISIONS),
    )
    num_nodes: int = _arg(
        1, "Machines taking part in the run (for torchrun or a cluster scheduler, --nnodes).", fixed_by_sweep=True
    )
    strategy: str = _arg(
        "auto",
        "Lightning strategy: auto (ddp when there is more than one process), ddp, "
        "ddp_find_unused_parameters_true (not ddp_spawn: use ddp).",
        choices=STRATEGIES,
        fixed_by_sweep=True,
    )

    def __post_init__(self) -> None:
        """Parse text values of fields that have a parser (whichever layer they came from)."""
        for f in dataclasses.fields(self):
            parse = f.metadata.get("parse")
            if parse is not None:
                setattr(self, f.name, parse(getattr(self, f.name)) if getattr(self, f.name) is not None else None)
        if self.task_name is None and not self.uses_custom_files:
            self.task_name = DEFAULT_TASK  # with your own files, None: the task is named after the training file
        if self.reproducibility == reproducibility.PORTABLE and self.num_threads is None:
            self.num_threads = reproducibility.PORTABLE_THREADS  # written to config.yaml: part of the run's identity

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        """Reject values that cannot work, with a line that says how to fix them."""
        positive_ints = ("train_batch_size", "eval_batch_size", "max_seq_length", "epochs", "devices", "num_nodes")
        for name in positive_ints:
            value = getattr(self, name)
            if value < 1:
                raise GlueboxError(f"--{name} must be at least 1, got {value}")
        if self.micro_batch_tokens is not None and self.micro_batch_tokens < 0:
            raise GlueboxError(f"--micro_batch_tokens must be 0 (no cap) or more, got {self.micro_batch_tokens}")
        for name in ("micro_batch_size", "max_train_samples", "max_eval_samples", "num_threads", "checkpoint_every_n_steps",
                     "max_classes", "max_steps", "eval_every_n_steps", "early_stopping_patience", "pad_to_multiple_of"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise GlueboxError(f"--{name} must be at least 1, got {value}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise GlueboxError(f"--learning_rate must be a positive number, got {self.learning_rate}")
        if self.adam_epsilon <= 0:
            raise GlueboxError(f"--adam_epsilon must be positive, got {self.adam_epsilon}")
        if self.weight_decay < 0:
            raise GlueboxError(f"--weight_decay must be 0 or more, got {self.weight_decay}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise GlueboxError(f"--warmup_steps must be 0 or more, got {self.warmup_steps}")
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio <= 1:
                raise GlueboxError(f"--warmup_ratio must be between 0 and 1, got {self.warmup_ratio}")
            if self.warmup_steps is not None:
                raise GlueboxError(f"--warmup_steps {self.warmup_steps} and --warmup_ratio {self.warmup_ratio} both set "
                                   "the warmup; give one of them")
        if self.lr_scheduler == "constant" and (self.warmup_steps or self.warmup_ratio):
            raise GlueboxError("--lr_scheduler constant has no warmup; use constant_with_warmup, or drop "
                               f"--{'warmup_steps' if self.warmup_steps else 'warmup_ratio'}")
        if self.time_budget is not None and not (self.time_budget > 0 and math.isfinite(self.time_budget)):
            raise GlueboxError(f"--time_budget must be a positive duration like 90s, 30m or 2h, got {self.time_budget:g} s")
        if not (self.early_stopping_min_delta >= 0 and math.isfinite(self.early_stopping_min_delta)):
            raise GlueboxError(f"--early_stopping_min_delta must be 0 or more, got {self.early_stopping_min_delta}")
        if self.early_stopping_min_delta and self.early_stopping_patience is None:
            raise GlueboxError("--early_stopping_min_delta only applies to early stopping; add --early_stopping_patience")
        if not 0 <= self.dropout_rate < 1:
            raise GlueboxError(f"--dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if not (self.checkpoint_every_minutes >= 0 and math.isfinite(self.checkpoint_every_minutes)):
            raise GlueboxError(f"--checkpoint_every_minutes must be 0 or more, got {self.checkpoint_every_minutes}")
        if self.gradient_clip_val < 0:
            raise GlueboxError(f"--gradient_clip_val must be 0 or more, got {self.gradient_clip_val}")
        if self.peft not in PEFT_METHODS:
            raise GlueboxError(f"--peft must be one of {', '.join(PEFT_METHODS)}, got '{self.peft}'")
        if self.peft == "none":
            given = [name for name in LORA_FLAGS if getattr(self, name) != _default(name)]
            if given:
                raise GlueboxError(f"--{given[0]} only applies to LoRA; add --peft lora (or drop --{given[0]})")
        if self.lora_r < 1:
            raise GlueboxError(f"--lora_r must be at least 1, got {self.lora_r}")
        if not (self.lora_alpha > 0 and math.isfinite(self.lora_alpha)):
            raise GlueboxError(f"--lora_alpha must be a positive number, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise GlueboxError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}")
        reproducibility.check_mode(self.reproducibility)
        allocator.check_allocator(self.allocator)
        if self.strategy not in STRATEGIES:
            hint = "; ddp runs the same training, in processes Lightning starts with the same command" \
                if self.strategy == "ddp_spawn" else ""
            raise GlueboxError(f"--strategy must be one of {', '.join(STRATEGIES)}, got '{self.strategy}'{hint}")
        if self.train_batch_size < self.processes:
            raise GlueboxError(
                f"--train_batch_size {self.train_batch_size} is smaller than the {self.processes} processes "
                "(--devices x --num_nodes); each process needs a share of every batch"
            )
        for f in config_fields():
            check_choice(f, getattr(self, f.name))
        if not self.uses_custom_files and self.task_name not in GLUE_TASK_NAMES:
            raise GlueboxError(
                f"unknown task '{self.task_name}'; choose one of {', '.join(GLUE_TASK_NAMES)}, "
                "or give your own data with --train_file"
            )
        return self

    @property
    def token_cap(self) -> int:
        """``--micro_batch_tokens``, or its default for this run (0: no cap)."""
        if self.micro_batch_tokens is not None:
            return self.micro_batch_tokens
        return DEFAULT_TOKEN_CAP[self.peft]

    @property
    def padding_multiple(self) -> int:
        """``--pad_to_multiple_of``, or its default for this run's precision."""
        if self.pad_to_multiple_of is not None:
            return self.pad_to_multiple_of
        return 8 if self.precision in MIXED_PRECISIONS else 1

    def pad_width(self, longest: int) -> int:
        """The padded length of a micro-batch whose longest example has ``longest`` tokens: ``--max_seq_length``
        under ``--padding max_length``; else ``longest`` rounded up to :attr:`padding_multiple`, at most
        ``--max_seq_length`` (and never below ``longest``)."""
        if self.padding == "max_length":
            return self.max_seq_length
        rounded = -(-longest // self.padding_multiple) * self.padding_multiple
        return max(longest, min(rounded, self.max_seq_length))

    @property
    def recomputes(self) -> bool:
        """``--recompute``, or its default for this run."""
        if self.recompute is not None:
            return self.recompute
        return DEFAULT_RECOMPUTE[self.peft]

    @property
    def processes(self) -> int:
        """Training processes in all: one per device on every node."""
        return self.devices * self.num_nodes

    @property
    def uses_custom_files(self) -> bool:
        return self.train_file is not None or self.validation_file is not None

    @property
    def resolved_task_name(self) -> str:
        """The task's name: ``--task_name``, or with your own files and no ``--task_name``, the training file's
        name without its extension (``reviews.csv``: ``reviews``)."""
        if self.task_name is not None:
            return self.task_name
        return Path(self.train_file or self.validation_file).stem


def _default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)


def config_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(TrainConfig))


def read_yaml_mapping(path: str, what: str = "config file") -> dict[str, Any]:
    """A YAML file that holds a mapping; a missing file or malformed YAML is a one-line error."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise GlueboxError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise GlueboxError(f"{what} {path} is not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise GlueboxError(f"{what} {path} is not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GlueboxError(f"{what} {path} must be a mapping of names to values")
    return data


def load_yaml_config(path: str) -> dict[str, Any]:
    """Read a YAML file of flag values; unknown keys and malformed YAML are one-line errors."""
    return config_values(read_yaml_mapping(path), f"config file {path}")


def config_values(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Flag values from a mapping (aliases resolved, types checked); ``source`` names it in errors."""
    known = {f.name: f for f in config_fields()}
    aliases = {a.lstrip("-"): f.name for f in config_fields() for a in f.metadata.get("aliases", ())}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = aliases.get(str(key), str(key))
        if name not in known:
            close = ", ".join(sorted(n for n in known if n.split("_")[0] in str(key))) or "see `gluebox train --help`"
            raise GlueboxError(f"{source}: unknown key '{key}' (known keys: {close})")
        values[name] = coerce_value(known[name], value, source)
    return values


def value_type(f: dataclasses.Field) -> type:
    """The type a field's value has once parsed: bool, int, float or str (``X | None`` gives X)."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    kinds = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return kinds[0]


def text_flag(f: dataclasses.Field) -> bool:
    """True for fields given as text and parsed (``--memory_budget 2GB``)."""
    return f.metadata.get("parse") is not None


def coerce_value(f: dataclasses.Field, value: Any, source: str) -> Any:
    """Check a YAML value against the field's type: ints and numeric text pass for floats (YAML
    reads ``3e-4`` as text); parsed fields take text or numbers."""
    if value is None:
        return None
    kind = value_type(f)
    if text_flag(f) and isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    try:
        if kind is bool or kind is int:
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, int):
                raise TypeError
            return value
        if kind is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise GlueboxError(f"{source}: '{f.name}' must be {kind.__name__}, got {value!r}") from None


def check_choice(f: dataclasses.Field, value: Any, source: str = "") -> None:
    """A value of a flag with ``choices`` (``--padding``) that is not one of them is a one-line error,
    whichever layer it came from (the command line's parser checks its own). ``--task_name`` may also
    name the user's own data."""
    choices = f.metadata.get("choices")
    if choices and f.name != "task_name" and value is not None and value not in choices:
        raise GlueboxError(f"{source}--{f.name} must be one of {', '.join(choices)}, got {value!r}")


def names_where(prop: str) -> frozenset[str]:
    """The fields whose metadata sets ``prop`` (``resumable``, ``fixed_by_sweep``)."""
    return frozenset(f.name for f in config_fields() if f.metadata.get(prop))


def environment_values(environ: "typing.Mapping[str, str] | None" = None,
                       given: "typing.Mapping[str, Any] | None" = None) -> dict[str, Any]:
    """Defaults replaced by ``GLUEBOX_*`` variables (the Docker image sets them to what it baked in).

    ``given``: what the user set. When it names your own data files, ``GLUEBOX_TASK`` does not apply:
    it replaces the default GLUE task, and your data's task is named by ``--task_name`` or its file.
    """
    environ = os.environ if environ is None else environ
    values = {f.name: environ[f.metadata["env"]] for f in config_fields()
              if f.metadata.get("env") and environ.get(f.metadata["env"])}
    if given is not None and (given.get("train_file") is not None or given.get("validation_file") is not None):
        values.pop("task_name", None)
    return values


def given_values(yaml_path: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    """What the user set: the YAML file's values, then the command line's on top."""
    return (load_yaml_config(yaml_path) if yaml_path else {}) | flags


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each path flag (``path`` above) absolute against the current folder, ``~`` expanded, and
    ``model_name_or_path`` too when it names a local folder (a Hub id stays as it is)."""
    paths = names_where("path")
    absolute = dict(values)
    for name, value in values.items():
        if value is None or (name not in paths and name != "model_name_or_path"):
            continue
        path = Path(str(value)).expanduser()
        if name in paths or path.exists():
            absolute[name] = os.path.abspath(path)
    return absolute


def resolve(given: dict[str, Any]) -> TrainConfig:
    """A new run's config: defaults, then the environment, then what the user set."""
    return TrainConfig(**(environment_values(given=given) | given))


def resume_config(saved: dict[str, Any], given: dict[str, Any], run_path: Path) -> TrainConfig:
    """A resumed run's config: its saved ``config.yaml``, with only the ``resumable`` flags of ``given``.

    Any other flag is refused in one line if it would change the run; values are compared as
    the run saved them, after the same parsing (``--text_pair_column none`` is saved as no
    column). ``--overwrite`` and ``--output_dir`` make no sense with a resume.
    """
    known = {f.name for f in config_fields()}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise GlueboxError(
            f"cannot resume {run_path}: config.yaml has settings this gluebox does not know ({', '.join(unknown)})"
        )
    if given.get("overwrite"):
        raise GlueboxError("--resume continues a run and --overwrite replaces one; use one of them")
    if given.get("output_dir") is not None and Path(given["output_dir"]).resolve() != Path(run_path).resolve():
        raise GlueboxError(
            f"--resume continues {run_path} in place; drop --output_dir (copy the folder first to keep the original)"
        )
    resumable = names_where("resumable")
    saved, given = absolute_paths(saved), absolute_paths(given)  # a run from an older gluebox may hold relative ones
    maths = {name: value for name, value in given.items() if name not in resumable | {"overwrite", "output_dir"}}
    original = TrainConfig(**saved)
    candidate = TrainConfig(**(saved | maths)).validate()
    for name, value in maths.items():
        if getattr(candidate, name) != getattr(original, name):
            had = saved.get(name) if saved.get(name) is not None else "the default"
            raise GlueboxError(
                f"--resume continues {run_path} with the settings in its config.yaml; --{name} {value} would change "
                f"the run (it has {had}); drop the flag, or start a new run to change it"
            )
    config = TrainConfig(**(saved | {name: given[name] for name in resumable & set(given)}))
    config.overwrite = False
    config.accept_changes = bool(given.get("accept_changes"))  # this resume's, never a saved one
    config.output_dir = str(run_path)
    return config
