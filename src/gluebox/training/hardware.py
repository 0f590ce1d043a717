"""Choose the device and CPU threads for a run."""

from __future__ import annotations

import torch

from gluebox import resources


def configure_threads(num_threads: int | None) -> int:
    """Use the given thread count, or one per CPU this process may use (container quota included)."""
    threads = num_threads or resources.available_cpus()
    torch.set_num_threads(threads)
    return threads


def deterministic() -> None:
    """Deterministic kernels, without filling every new tensor with NaN.

    ``torch.use_deterministic_algorithms`` also turns on that fill, so that reads of garbage
    show up: a debugging aid, not part of determinism, and a memory pass over every activation
    and gradient buffer. cuBLAS needs a fixed workspace to be deterministic.
    """
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False


def device_name(accelerator: str) -> str:
    """The device Fabric will pick for ``accelerator`` (for the run record)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    if accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        return "mps"
    return "cpu"
