"""Plan a run's memory: pick the micro-batch size that keeps peak RSS under a budget.

The estimate adds up what a training step holds at its peak:

- a fixed cost for the Python process with torch, transformers and lightning imported;
- weights, gradients and the two AdamW moments: 16 bytes per parameter in fp32;
- activations saved for backward, per encoder layer, following Korthikanti et al. (2022)
  for fp32: ``tokens * hidden * (ACT_PER_HIDDEN + ACT_PER_HEAD_TOKEN * heads * seq / hidden)``
  bytes, at the longest sequence of the training data.

The constants were measured on DistilBERT-shaped models (see the README's memory section);
the estimate is meant to err on the high side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gluebox import resources
from gluebox.config import parse_bytes

BASE_PROCESS_BYTES = 550 * 2**20
"""Resident memory of a process that has imported torch, transformers and lightning, with data loaded."""
BYTES_PER_PARAMETER = 16
ACT_PER_HIDDEN = 80
ACT_PER_HEAD_TOKEN = 12
SAFETY = 0.9
"""Plan to use at most this share of the budget."""


@dataclass
class MemoryPlan:
    """How a run's batches are split to fit its memory budget."""

    batch_size: int
    micro_batch_size: int
    accumulation_steps: int
    budget_bytes: int | None
    budget_source: str
    estimated_peak_bytes: int
    longest_sequence: int

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        budget = f"{self.budget_bytes / 1e9:.2f} GB ({self.budget_source})" if self.budget_bytes else "none"
        return (
            f"memory plan: batch {self.batch_size} = {self.accumulation_steps} x micro-batch {self.micro_batch_size}; "
            f"estimated peak {self.estimated_peak_bytes / 1e9:.2f} GB; budget {budget}"
        )


def _shape(model_config) -> tuple[int, int, int]:
    hidden = getattr(model_config, "hidden_size", None) or getattr(model_config, "dim", 768)
    layers = getattr(model_config, "num_hidden_layers", None) or getattr(model_config, "n_layers", 12)
    heads = getattr(model_config, "num_attention_heads", None) or getattr(model_config, "n_heads", 12)
    return hidden, layers, heads


def estimate_peak_bytes(num_parameters: int, model_config, micro_batch_size: int, sequence_length: int) -> int:
    hidden, layers, heads = _shape(model_config)
    tokens = micro_batch_size * sequence_length
    per_layer = tokens * hidden * (ACT_PER_HIDDEN + ACT_PER_HEAD_TOKEN * heads * sequence_length / hidden)
    return int(BASE_PROCESS_BYTES + BYTES_PER_PARAMETER * num_parameters + layers * per_layer)


def resolve_budget(memory_budget: str | None) -> tuple[int | None, str]:
    if memory_budget is not None:
        return parse_bytes(memory_budget), "--memory_budget"
    limit = resources.memory_limit()
    if limit is not None:
        return limit, "container memory limit"
    return None, "none"


def plan(
    batch_size: int,
    micro_batch_size: int | None,
    memory_budget: str | None,
    num_parameters: int,
    model_config,
    longest_sequence: int,
) -> MemoryPlan:
    """The largest micro-batch (at most the batch) whose estimated peak fits the budget."""
    budget, source = resolve_budget(memory_budget)
    if micro_batch_size is not None:
        size, source = min(micro_batch_size, batch_size), "--micro_batch_size" if budget is None else source
    elif budget is None:
        size = batch_size
    else:
        size = 1
        for candidate in range(batch_size, 0, -1):
            if estimate_peak_bytes(num_parameters, model_config, candidate, longest_sequence) <= budget * SAFETY:
                size = candidate
                break
        steps = -(-batch_size // size)
        size = -(-batch_size // steps)
    steps = -(-batch_size // size)
    return MemoryPlan(
        batch_size=batch_size,
        micro_batch_size=size,
        accumulation_steps=steps,
        budget_bytes=budget,
        budget_source=source,
        estimated_peak_bytes=estimate_peak_bytes(num_parameters, model_config, size, longest_sequence),
        longest_sequence=longest_sequence,
    )
