"""Several training processes, one model: who is rank 0, which examples each process takes.

gluebox runs multi-process training through Lightning's DDP strategy; the processes come from
``torchrun``, a cluster scheduler, or Lightning's own launcher. This module holds the few
pieces gluebox adds on top:

- which rank a process will be, read from its launcher's environment before Lightning starts
  (so that only rank 0 checks and creates the run directory);
- the share of a training batch and of a validation split that each process takes: every
  process sees the same global batches from ``TrainBatchSampler`` and takes every
  ``world_size``-th example of each; validation is cut into contiguous blocks of whole batches,
  without the duplicates a ``DistributedSampler`` pads with;
- gathering small Python objects (validation predictions) from every process;
- a seed per rank for dropout (the callback that applies it is ``callbacks.DistributedRun``).

Outside a distributed run every function here behaves as a single process of rank 0.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch


def launcher_rank(devices_per_node: int) -> int:
    """The global rank the launcher gave this process, before Lightning starts; 0 for a plain process.

    ``torchrun`` and schedulers' PyTorch integrations set ``RANK``; SLURM sets ``SLURM_PROCID``;
    the child processes of Lightning's own launcher get ``LOCAL_RANK`` and ``NODE_RANK``.
    """
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"])
    node = int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")))
    return node * devices_per_node + int(env.get("LOCAL_RANK", "0"))


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes, once the process group is up; else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def batch_share(indices: list[int], rank: int, world_size: int) -> list[int]:
    """This process's examples of a global batch: every ``world_size``-th one, starting at ``rank``.

    Striding (rather than cutting the batch in blocks) spreads long and short examples of a
    length-grouped batch evenly over the processes. Shares differ by at most one example.
    """
    return list(indices[rank::world_size])


def shard_range(length: int, rank: int, world_size: int) -> range:
    """A contiguous block of ``range(length)``; the blocks of all ranks cover it exactly once."""
    start = length * rank // world_size
    stop = length * (rank + 1) // world_size
    return range(start, stop)


class ShardSampler(torch.utils.data.Sampler[int]):
    """Validation order: this process's contiguous block of whole batches, no padding, no duplicates.

    The split's batches of ``batch_size`` are cut into one contiguous block per process, so each
    process scores exactly the batches a single process would (same examples, same padding).
    The rank is looked up when the loader is iterated (the process group exists by then), so the
    same loader object works under every launcher, ``ddp_spawn`` included.
    """

    def __init__(self, length: int, batch_size: int = 1, rank: int | None = None, world_size: int | None = None):
        self.length = length
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def _range(self) -> range:
        rank, world_size = rank_and_world_size()
        rank = rank if self.rank is None else self.rank
        world_size = world_size if self.world_size is None else self.world_size
        batches = shard_range(-(-self.length // self.batch_size), rank, world_size)
        return range(batches.start * self.batch_size, min(batches.stop * self.batch_size, self.length))

    def __iter__(self):
        return iter(self._range())

    def __len__(self) -> int:
        return len(self._range())


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (a list of one outside a distributed run)."""
    rank, world_size = rank_and_world_size()
    if world_size == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def rank_seed(seed: int, rank: int) -> int:
    """A seed for ``rank``'s random draws (dropout), derived from the run's seed."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def threads_per_process(num_threads: int | None, processes_on_this_node: int) -> int | None:
    """The user's thread count, or None (all CPUs) split between the processes of a node."""
    if num_threads is not None or processes_on_this_node <= 1:
        return num_threads
    from gluebox import resources

    return max(1, resources.available_cpus() // processes_on_this_node)
