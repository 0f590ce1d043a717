"""Freed tensor memory goes back to the OS: by default, and always under a memory budget."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import sys
import torch
from gluebox.training.allocator import return_freed_memory_to_os

def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

if sys.argv[1] == "fixed":
    assert return_freed_memory_to_os()
block = torch.ones(4 * 2**20 // 4)  # freeing a 4 MiB block raises glibc's dynamic threshold
del block
before = rss_mib()
blocks, pins = [], []
for _ in range(50):  # 150 MiB of 3 MiB tensors, each followed by a small tensor that stays alive
    blocks.append(torch.ones(3 * 2**20 // 4))
    pins.append(torch.ones(64 * 1024 // 4))
del blocks
print(rss_mib() - before)
"""


def retained_mib(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_tensors_leave_rss_under_a_budget_but_not_by_default():
    assert retained_mib("fixed") < 20
    assert retained_mib("dynamic") > 100, "the probe no longer shows glibc keeping freed memory"


def test_memory_plan_returns_freed_memory_when_asked_and_always_under_a_budget():
    from transformers import DistilBertConfig

    from gluebox.training.memory import plan

    config = DistilBertConfig()
    assert plan(32, None, "3GB", 66_000_000, config, 103).returns_freed_memory
    assert plan(32, None, "3GB", 66_000_000, config, 103, release_memory=False).returns_freed_memory
    assert plan(32, None, None, 66_000_000, config, 103, release_memory=True).returns_freed_memory
    kept = plan(32, None, None, 66_000_000, config, 103, release_memory=False)
    assert kept.returns_freed_memory == (kept.budget_bytes is not None)  # a container limit is a budget

