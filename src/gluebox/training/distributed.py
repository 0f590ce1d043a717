"""Several training processes, one model: who is rank 0, which examples each process takes.

gluebox runs multi-process training through Lightning Fabric's DDP strategy; the processes come
from ``torchrun``, a cluster scheduler, or Fabric's own launcher. This module holds the few
pieces gluebox adds on top:

- which rank a process will be, read from its launcher's environment before Lightning starts
  (so that only rank 0 checks and creates the run directory);
- (the share of a batch and of a validation split that each process takes is in
  :mod:`gluebox.data.sharding`);
- gathering small Python objects (validation predictions) from every process;
- a seed per rank for dropout (applied by :func:`gluebox.training.loop.fit`).

Outside a distributed run every function here behaves as a single process of rank 0.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from gluebox.data.sharding import rank_and_world_size


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
