"""Plan a run's memory: pick the micro-batch size that keeps peak RSS under a budget.

The estimate adds up what a training step holds at its peak:

- a fixed cost for the Python process with torch, transformers and lightning imported;
- weights, gradients and the two AdamW moments: 16 bytes per trained parameter in fp32, and
  4 bytes (the weight alone) per frozen one (``--peft lora`` freezes all but its adapters and
  the classification head);
- activations saved for backward, per encoder layer, following Korthikanti et al. (2022)
  for fp32: ``tokens * hidden * (ACT_PER_HIDDEN + ACT_PER_HEAD_TOKEN * heads * seq / hidden)``
  bytes, at the longest sequence of the training data. With ``--recompute`` (the default,
  :mod:`gluebox.training.lean`) the activation function's output is not kept
  (``ACT_PER_HIDDEN_RECOMPUTED``) and the attention's square tensors exist for one layer at
  a time, while the backward pass recomputes it; each layer keeps only its dropout mask, one bit
  an element (``KEPT_MASK_PER_HEAD_TOKEN``).

The constants were measured on DistilBERT-shaped models (docs/performance.md, "Memory by default");
the estimate is meant to err on the high side.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

from gluebox import allocator, resources
from gluebox.config import parse_bytes
from gluebox.errors import GlueboxError

BASE_PROCESS_BYTES = 520 * 2**20
"""Resident memory besides weights, optimizer state and activations: imports, data, tokenizer.

Under a budget, freed memory goes back to the OS (:mod:`gluebox.allocator`), so RSS follows
live tensors. Measured on 2 cores with a DistilBERT-shaped model: 1273 MiB between steps =
about 507 MiB + 12 bytes per parameter (weights and AdamW moments)."""
BYTES_PER_PARAMETER = 16
"""A trained parameter: its weight, gradient and two AdamW moments in fp32."""
BYTES_PER_FROZEN_PARAMETER = 4
"""A frozen parameter (LoRA): its weight alone.

Activations are estimated as for full fine-tuning. Measured on DistilBERT (batch 32 x 103 tokens,
``--recompute``, freed memory returned to the OS), LoRA's forward pass keeps as much as full
fine-tuning's (989 MiB against 970): frozen layers keep no input for a weight gradient, but each
adapter keeps its own dropped input; the peak of a step was 1599 MiB against an estimate of 1702."""
ACT_PER_HIDDEN = 76
ACT_PER_HEAD_TOKEN = 12
ACT_PER_HIDDEN_RECOMPUTED = ACT_PER_HIDDEN - 16
"""Without the activation function's output (4 x hidden floats a token) kept for the backward pass."""
KEPT_MASK_PER_HEAD_TOKEN = 1 / 8
"""With recompute, each layer keeps its attention's dropout mask (a bit per head, token and position) for
the recomputation, instead of drawing it again (:class:`gluebox.training.dropout.Mask`)."""
SAFETY = 0.97
"""Plan to use at most this share of the budget.

The activation constants err high: DistilBERT measured 0.35 MiB per token at sequence
length 32 and 0.42 at 128 (``ACT_PER_HIDDEN`` 72-73), against the 0.38 and 0.44 estimated."""


@dataclass
class MemoryPlan:
    """How a run's batches are split to fit its memory budget."""

    batch_size: int
    micro_batch_size: int | None
    """At most this many examples per forward/backward pass (None: no cap by count)."""
    micro_batch_tokens: int | None
    """At most this many padded tokens per forward/backward pass (None: no cap by tokens)."""
    budget_bytes: int | None
    budget_source: str
    estimated_peak_bytes: int
    longest_sequence: int
    returns_freed_memory: bool = False
    """Whether freed memory is handed back to the OS at once (:func:`needs_freed_memory_returned`, with
    ``--release_memory``, and with LoRA under glibc)."""
    recompute: bool = False
    """Whether attention and activation outputs are recomputed in the backward pass (``--recompute``)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def worst_case_micro_batches(self) -> int:
        """Micro-batches in a batch of the longest examples."""
        per_micro = self.batch_size
        if self.micro_batch_size:
            per_micro = min(per_micro, self.micro_batch_size)
        if self.micro_batch_tokens:
            per_micro = min(per_micro, max(1, self.micro_batch_tokens // self.longest_sequence))
        return -(-self.batch_size // per_micro)

    @property
    def over_budget(self) -> bool:
        """True when even the smallest micro-batch is estimated to exceed the budget."""
        return self.budget_bytes is not None and self.estimated_peak_bytes > self.budget_bytes

    def describe(self) -> str:
        budget = f"{self.budget_bytes / 1e9:.2f} GB ({self.budget_source})" if self.budget_bytes else "none"
        warning = ""
        if self.over_budget:
            warning = (
                "; WARNING: over budget even one example at a time: lower --max_seq_length, "
                "use a smaller model or allow more memory"
            )
        caps = []
        if self.micro_batch_size:
            caps.append(f"at most {self.micro_batch_size} examples")
        if self.micro_batch_tokens:
            caps.append(f"at most {self.micro_batch_tokens} padded tokens")
        split = f"micro-batches of {' and '.join(caps)}" if caps else "whole batches"
        freed = "; freed memory goes back to the OS at once" if self.returns_freed_memory else ""
        return (
            f"memory plan: batch {self.batch_size} as {split} (longest batch in {self.worst_case_micro_batches}); "
            f"estimated peak {self.estimated_peak_bytes / 1e9:.2f} GB; budget {budget}{freed}{warning}"
        )


def model_shape(model_config) -> tuple[int, int, int]:
    """Hidden size, layers and attention heads of a BERT- or DistilBERT-style config."""
    hidden = getattr(model_config, "hidden_size", None) or getattr(model_config, "dim", 768)
    layers = getattr(model_config, "num_hidden_layers", None) or getattr(model_config, "n_layers", 12)
    heads = getattr(model_config, "num_attention_heads", None) or getattr(model_config, "n_heads", 12)
    return hidden, layers, heads


def estimate_peak_bytes(num_parameters: int, model_config, tokens: int, sequence_length: int,
                        recompute: bool = False, trainable_parameters: int | None = None) -> int:
    """Peak RSS of a training step over ``tokens`` padded tokens in sequences of ``sequence_length``;
    ``trainable_parameters`` of the ``num_parameters`` are trained (default: all)."""
    hidden, layers, heads = model_shape(model_config)
    attention = tokens * ACT_PER_HEAD_TOKEN * heads * sequence_length
    if recompute:
        masks = layers * tokens * KEPT_MASK_PER_HEAD_TOKEN * heads * sequence_length
        activations = layers * tokens * hidden * ACT_PER_HIDDEN_RECOMPUTED + attention + masks
    else:
        activations = layers * (tokens * hidden * ACT_PER_HIDDEN + attention)
    trainable = num_parameters if trainable_parameters is None else trainable_parameters
    parameters = BYTES_PER_PARAMETER * trainable + BYTES_PER_FROZEN_PARAMETER * (num_parameters - trainable)
    return int(BASE_PROCESS_BYTES + parameters + activations)


CONTAINER_LIMIT = "container memory limit"
KEPT_MEMORY_MARGIN = 1.5
"""How far above its estimate a run's peak may grow when freed memory stays in the process for reuse:
over a whole DistilBERT epoch on MRPC, 1.05x under mimalloc and 1.40x under glibc's heap (docs/performance.md,
"Memory by default"). Under a container's memory limit with that much room, freed memory is kept: returning it
at once took 1.33x the step time under mimalloc and 1.45x under glibc (30 stratified DistilBERT steps,
``benchmarks/results-release.json``)."""


def resolve_budget(memory_budget: str | None) -> tuple[int | None, str]:
    """The budget the plan must keep to: ``--memory_budget``, else the container's limit, else none."""
    if memory_budget is not None:
        return parse_bytes(memory_budget), "--memory_budget"
    limit = resources.memory_limit()
    if limit is not None:
        return limit, CONTAINER_LIMIT
    return None, "none"


def needs_freed_memory_returned(estimated_peak: int, budget: int | None, source: str) -> bool:
    """Whether a budget is tight enough that freed memory must go back to the OS at once: always for
    ``--memory_budget`` (the user asked for the limit) and when the plan had to fit the memory free now;
    under a container's limit only when the peak, grown by :data:`KEPT_MEMORY_MARGIN`, would not fit."""
    if budget is None:
        return False
    if source != CONTAINER_LIMIT:
        return True
    return estimated_peak * KEPT_MEMORY_MARGIN > budget * SAFETY


AVAILABLE = "available memory (MemAvailable)"


def available_budget(memory_budget: str | None) -> tuple[int, str]:
    """The memory a run can count on: :func:`resolve_budget`, else what the machine has free now.

    Free memory is MemAvailable plus what this process already holds (it is part of the
    run's peak).
    """
    budget, source = resolve_budget(memory_budget)
    if budget is not None:
        return budget, source
    return resources.available_memory() + resources.current_rss_bytes(), AVAILABLE


def refuse_if_over(estimated_peak: int, budget: int, source: str, resumed: bool = False,
                   lora: MemoryPlan | None = None) -> None:
    """One line, before anything is written, when even one example at a time cannot fit.

    A resumed run keeps its own micro-batches (other ones would change the last bits of its
    results), so it needs what its plan needs. ``lora``: the plan of the same run with ``--peft
    lora`` when that one fits (:func:`lora_alternative`); the line then offers it.
    """
    if estimated_peak <= budget:
        return
    if resumed:
        raise GlueboxError(
            f"not enough memory: the run's memory plan (memory_plan.json) needs about {estimated_peak / 1e9:.2f} GB "
            f"but {budget / 1e9:.2f} GB is available ({source}); resume it where there is more memory"
        )
    offer = ("" if lora is None else
             f"; --peft lora would fit (planned peak {lora.estimated_peak_bytes / 1e9:.2f} GB: its frozen weights "
             "need no gradients or AdamW state); or")
    raise GlueboxError(
        f"not enough memory: training needs about {estimated_peak / 1e9:.2f} GB even one example at a time, "
        f"but {budget / 1e9:.2f} GB is available ({source}){offer or ';'} lower --max_seq_length, use a smaller model, "
        "or allow more memory"
    )


def parameter_counts(model_config, lora=None) -> tuple[int, int]:
    """Parameters and trained parameters of the model ``model_config`` makes (with the adapters and
    trained head of ``lora``, a ``--peft lora`` TrainConfig, when given), counted on a model built
    on the meta device: no weights are read."""
    import torch
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(model_config)
        if lora is not None:
            from gluebox.training.adapters import add_lora

            model = add_lora(model, lora)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if p.requires_grad)


def lora_alternative(config, model_config, longest_sequence: int) -> MemoryPlan | None:
    """The memory plan the same full fine-tuning run would get with ``--peft lora`` (its adapters,
    micro-batch tokens and recompute defaults), when that plan fits the budget; else None (also for
    a LoRA run, and for a model LoRA cannot be added to without ``--lora_target_modules``)."""
    if config.peft == "lora":
        return None
    lora = dataclasses.replace(config, peft="lora")
    try:
        parameters, trainable = parameter_counts(model_config, lora)
    except Exception:  # noqa: BLE001 - no default adapter layers, or a model the meta device cannot build: no offer
        return None
    alternative = plan(lora.train_batch_size, lora.micro_batch_size, lora.memory_budget, parameters, model_config,
                       longest_sequence, lora.recomputes, trainable_parameters=trainable,
                       release_memory=lora.release_memory, micro_batch_tokens=lora.token_cap)
    return None if alternative.over_budget else alternative


def preflight(config) -> None:
    """Refuse a run that cannot fit before any data is read, from the model's config alone.

    Counts the parameters of the model built on the ``meta`` device (no weights are read)
    and checks that the process, the weights and the optimizer state alone fit (with
    ``--peft lora``, the weights alone: its adapters are not counted yet). Any problem with the
    model itself is left to the real load, which explains it. A full fine-tuning run refused here
    is offered LoRA when LoRA's plan fits, planned at ``--max_seq_length`` (the data is not read yet).
    """
    try:
        from gluebox.training.pretrained import load_config
        from gluebox.tasks import GLUE_TASKS

        task = GLUE_TASKS.get(config.task_name) or GLUE_TASKS["mrpc"]
        model_config = load_config(config.model_name_or_path, task, config.dropout_rate)
        num_parameters, _ = parameter_counts(model_config)
    except Exception:  # noqa: BLE001 - the real load reports model problems in its own words
        return
    budget, source = available_budget(config.memory_budget)
    trainable = 0 if config.peft == "lora" else num_parameters
    peak = estimate_peak_bytes(num_parameters, model_config, 1, 1, trainable_parameters=trainable)
    if peak > budget:
        refuse_if_over(peak, budget, source, lora=lora_alternative(config, model_config, config.max_seq_length))


def plan(
    batch_size: int,
    micro_batch_size: int | None,
    memory_budget: str | None,
    num_parameters: int,
    model_config,
    longest_sequence: int,
    recompute: bool = False,
    trainable_parameters: int | None = None,
    release_memory: bool = False,
    micro_batch_tokens: int | None = None,
) -> MemoryPlan:
    """Cap micro-batches by padded tokens: at ``micro_batch_tokens`` (``--micro_batch_tokens``; 0 or
    None: no cap), and lower when the estimated peak would not fit the budget.

    The budget's cap is the largest token count whose estimate, at the longest sequence, stays under
    ``SAFETY`` times the budget; batches of short examples still run whole.

    With frozen parameters (LoRA) under glibc's malloc, freed memory always goes back to the OS:
    the adapters' many small temporaries (dropped inputs, low-rank products) otherwise fragment
    glibc's heap, and RSS stays far above the live tensors (measured on DistilBERT, batch 32 x 103
    tokens: the forward pass's RSS grew 1738 MiB instead of 989). mimalloc (the default allocator)
    does not need it, and returning memory at once cost LoRA a third of its speed in page faults.
    """
    budget, source = resolve_budget(memory_budget)
    longest = max(1, longest_sequence)
    if budget is None:
        # No limit was set: plan for the memory free now, but only when whole batches would not fit it.
        free, free_source = available_budget(None)
        whole = (min(micro_batch_size, batch_size) if micro_batch_size else batch_size) * longest
        if micro_batch_tokens:
            whole = min(whole, max(micro_batch_tokens, longest))
        if estimate_peak_bytes(num_parameters, model_config, whole, longest, recompute, trainable_parameters) > free * SAFETY:
            budget, source = free, free_source
    size = min(micro_batch_size, batch_size) if micro_batch_size else None
    full_tokens = (size or batch_size) * longest
    tokens = None
    if micro_batch_tokens and max(micro_batch_tokens, longest) < full_tokens:
        tokens = full_tokens = max(micro_batch_tokens, longest)
    if budget is not None:
        def fits(count: int) -> bool:
            return estimate_peak_bytes(num_parameters, model_config, count, longest, recompute,
                                       trainable_parameters) <= budget * SAFETY

        if not fits(full_tokens):
            low, high = longest, full_tokens
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if fits(middle) else (low, middle - 1)
            tokens = low
    worst_tokens = min(full_tokens, tokens or full_tokens)
    estimated_peak = estimate_peak_bytes(num_parameters, model_config, worst_tokens, longest, recompute,
                                         trainable_parameters)
    return MemoryPlan(
        batch_size=batch_size,
        micro_batch_size=size,
        micro_batch_tokens=tokens,
        budget_bytes=budget,
        budget_source=source,
        estimated_peak_bytes=estimated_peak,
        longest_sequence=longest,
        returns_freed_memory=(release_memory or needs_freed_memory_returned(estimated_peak, budget, source)
                              or ((trainable_parameters or num_parameters) < num_parameters
                                  and allocator.active() == allocator.SYSTEM)),
        recompute=recompute,
    )
