"""What this process may use: CPUs (container quota included), memory, and its peak RSS."""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_quota() -> float | None:
    """The container's CPU limit in CPUs (cgroup v2 ``cpu.max`` or v1 CFS quota), if any."""
    text = _read(_CGROUP / "cpu.max")
    if text:
        quota, _, period = text.partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    quota, period = _read(_CGROUP / "cpu" / "cpu.cfs_quota_us"), _read(_CGROUP / "cpu" / "cpu.cfs_period_us")
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def available_cpus() -> int:
    """CPUs this process may run on, rounded up from the container quota where that is lower."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def memory_limit() -> int | None:
    """The container's memory limit in bytes (cgroup v2 ``memory.max`` or v1), if any."""
    text = _read(_CGROUP / "memory.max")
    if text is None:
        text = _read(_CGROUP / "memory" / "memory.limit_in_bytes")
    if not text or text == "max":
        return None
    limit = int(text)
    return limit if limit < 2**60 else None


def available_memory() -> int:
    """Memory the system can give without swapping (MemAvailable of /proc/meminfo)."""
    import psutil

    return psutil.virtual_memory().available


def total_memory() -> int:
    import psutil

    return psutil.virtual_memory().total


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss
