"""Which examples each training process takes: a share of every batch, a block of every split.

Every process sees the same global batches from ``TrainBatchSampler`` and takes every
``world_size``-th example of each; validation is cut into contiguous blocks of whole batches,
without the duplicates a ``DistributedSampler`` pads with. Outside a distributed run every
function here behaves as a single process of rank 0.
"""

from __future__ import annotations

import torch


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
    same loader object works under every launcher.
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
