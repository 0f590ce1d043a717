"""Choose the device and CPU threads for a run."""

from __future__ import annotations

import torch

from gluebox import resources


def configure_threads(num_threads: int | None) -> int:
    """Use the given thread count, or one per CPU this process may use (container quota included)."""
    threads = num_threads or resources.available_cpus()
    torch.set_num_threads(threads)
    return threads


def skip_nan_fill_of_new_tensors() -> None:
    """Keep deterministic kernels but stop filling every new tensor with NaN.

    ``Trainer(deterministic=True)`` turns on ``torch.use_deterministic_algorithms``, which
    also fills each uninitialized tensor with NaN so that reads of garbage show up. That is
    a debugging aid, not part of determinism, and it costs a memory pass over every
    activation and gradient buffer. Call this after building the Trainer.
    """
    torch.utils.deterministic.fill_uninitialized_memory = False


def device_name(accelerator: str) -> str:
    """The device Lightning will pick for ``accelerator`` (for the run record)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    if accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        return "mps"
    return "cpu"
