"""Several training processes, one model: who is rank 0, which examples each process takes.

gluebox runs multi-process training through Lightning Fabric's DDP strategy; the processes come
from ``torchrun``, a cluster scheduler, or Fabric's own launcher. This module holds the few
pieces gluebox adds on top:

- which rank a process will be, read from its launcher's environment before Lightning starts
  (so that only rank 0 checks and creates the run directory);
- (the share of a batch and of a validation split that each process takes is in
  :mod:`gluebox.data.sharding`);
- gathering small Python objects (validation predictions) from every process;
- a seed per rank for dropout (applied by :func:`gluebox.training.loop.fit`);
- one stop for all: the signal any process got, agreed by all (:func:`agreed_signal`); and one end
  for all, rank 0 last (:func:`end_processes`).

Outside a distributed run every function here behaves as a single process of rank 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
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


def agreed_signal(fabric, signum: int | None) -> int | None:
    """The stop signal any process got (the higher number if several got different ones), the same in
    every process; None when none did. Every process calls it at the same step."""
    if fabric.world_size == 1:
        return signum
    agreed = fabric.all_reduce(torch.tensor(signum or 0, device=fabric.device), reduce_op="max")
    return int(agreed) or None


def end_processes(fabric, exit_code: int, timeout: float = 60) -> None:
    """Every process of a multi-process run that ended the same way in all (complete: ``exit_code`` 0;
    stopped by a signal after the same checkpoint: 130 or 143): wait until every process got here, close
    the process group, and under Fabric's launcher let rank 0 wait for the processes it started.

    Without the barrier and the close, a process that returned first exited while gloo's connection threads
    still ran, and its C++ runtime aborted ("terminate called without an active exception", SIGABRT),
    failing the launcher after a complete run. Lightning's watcher thread in rank 0 SIGKILLs every process
    as soon as one it started exits with a code other than 0; it is told to stand down first (it would kill
    rank 0, exit code 137, after a stop). Rank 0 exits last, so that ``docker stop``, which ends the container
    with its first process, ends no process midway; a process it started that did not end with ``exit_code``
    is named in a line.
    """
    launched = getattr(getattr(fabric.strategy, "launcher", None), "procs", None) or []
    for thread in threading.enumerate():
        if launched and type(thread).__name__ == "_ChildProcessObserver":  # Lightning's watcher (private)
            thread._termination_signal = 0  # signal 0 only checks that a process exists
    fabric.barrier()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for local_rank, process in enumerate(launched, start=1):
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        if code != exit_code:
            ended = f"has not ended after {timeout:.0f} s" if code is None else f"ended with exit code {code}"
            print(f"gluebox: warning: the process of local rank {local_rank} (pid {process.pid}) {ended}, "
                  f"not {exit_code}", file=sys.stderr, flush=True)
