"""Which examples share a batch, and how a batch becomes padded tensors.

Two choices here change speed and memory but not the maths:

- ``padding``: pad to the longest example of each micro-batch ("dynamic"; rounded up to
  ``--pad_to_multiple_of``, 8 under mixed precision) or to ``max_seq_length`` (the course
  project's way). Padded positions are masked, so the losses agree to float rounding.
- length grouping: shuffle with a seeded generator, then sort within windows of
  ``50 * batch_size`` examples so that a batch holds examples of similar length, then
  shuffle the order of the batches. Without it, batches are plain shuffled slices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gluebox.data.encoding import EncodedSplit
from gluebox.data.sharding import batch_share, rank_and_world_size

MEGA_BATCH_FACTOR = 50
"""Length grouping sorts windows of this many batches (as Hugging Face's LengthGroupedSampler)."""


class TrainBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Seeded, per-epoch deterministic batches of example indices, resumable mid-epoch.

    :meth:`set_epoch` is called before each epoch (by the training loop),
    so epoch ``e`` always gets the same batches for the same seed, whatever ran before (a
    resumed run included). The batches are drawn when the first one is asked for, not when
    the iterator is made.

    :meth:`state_dict` records how many batches of the epoch were handed out; after
    :meth:`load_state_dict`, the next pass over that epoch skips them.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, group_by_length: bool):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0
        self.served = 0
        """Batches of ``epoch`` handed out so far."""
        self._resume_at: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        epoch = self.epoch
        batches = self.batches(epoch)
        skip = 0
        if self._resume_at is not None:
            resume_epoch, served = self._resume_at
            skip = served if resume_epoch == epoch else 0
            self._resume_at = None
        self.served = skip
        for batch in batches[skip:]:
            self.served += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "served": self.served}

    def load_state_dict(self, state: dict) -> None:
        """Continue ``state["epoch"]`` after its first ``state["served"]`` batches.

        The epoch is set too: a run resumed mid-epoch does not start that epoch again.
        """
        self.epoch = int(state["epoch"])
        self._resume_at = (self.epoch, int(state["served"]))

    def batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.lengths), generator=generator).numpy()
        if not self.group_by_length:
            return [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        window = self.batch_size * MEGA_BATCH_FACTOR
        batches = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in shuffled]


@dataclass
class TrainBatch:
    """One optimizer step's examples, split into micro-batches that are run one at a time.

    In a multi-process run, ``micro_batches`` hold this process's share of the batch, while
    ``num_examples`` and ``num_tokens`` count the whole batch of all processes.
    """

    micro_batches: list[dict[str, torch.Tensor]]
    num_examples: int
    """Examples in the whole batch (all processes): every example's loss is divided by this."""
    num_tokens: int
    """Real (non-pad) tokens in the whole batch."""
    world_size: int = 1
    """Processes sharing the batch; DDP averages their gradients, so each scales its loss by this."""
    filler: bool = False
    """True when this process got no example of the batch (a last batch smaller than the number
    of processes): its one micro-batch is a copy of an example whose loss counts zero, run only
    so that this process takes part in the gradient exchange."""


class Collator:
    """Gathers examples by index and pads them into tensors.

    Each batch also carries ``example_index``, the examples' positions in the split, so that
    validation can put the predictions of several processes back in dataset order.
    """

    def __init__(self, split: EncodedSplit, pad_token_id: int, width: Callable[[int], int] | None,
                 micro_batch_size: int | None = None):
        self.split = split
        self.pad_token_id = pad_token_id
        self.width = width or (lambda longest: longest)
        """A micro-batch's padded length from its longest example's (``TrainConfig.pad_width``)."""
        self.micro_batch_size = micro_batch_size

    def pad(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows = [self.split.input_ids[i] for i in indices]
        width = self.width(max(len(r) for r in rows))
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, ids in enumerate(rows):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "example_index": torch.as_tensor(indices, dtype=torch.int64),
        }
        if self.split.token_type_ids is not None:
            types = np.zeros((len(rows), width), dtype=np.int64)
            for row, index in enumerate(indices):
                ids = self.split.token_type_ids[index]
                types[row, : len(ids)] = ids
            batch["token_type_ids"] = torch.from_numpy(types)
        if self.split.labels is not None:
            batch["labels"] = torch.from_numpy(self.split.labels[indices])
        return batch

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.pad(list(indices))


class TrainCollator(Collator):
    """Takes this process's share of a training batch and pads each of its micro-batches.

    Micro-batches hold at most ``micro_batch_size`` examples, and at most
    ``micro_batch_tokens`` padded tokens (examples x padded length), whichever is smaller;
    with neither, the whole share is one micro-batch. Splitting by tokens keeps long
    batches within the memory budget while short batches still run whole.

    Every process receives the same global batch from ``TrainBatchSampler`` and keeps every
    ``world_size``-th example (``distributed.batch_share``). ``rank`` and ``world_size`` default
    to the process group's, looked up at each batch; a single process keeps the whole batch.
    """

    def __init__(self, split: EncodedSplit, pad_token_id: int, width: Callable[[int], int] | None,
                 micro_batch_size: int | None = None, micro_batch_tokens: int | None = None,
                 rank: int | None = None, world_size: int | None = None):
        super().__init__(split, pad_token_id, width, micro_batch_size)
        self.micro_batch_tokens = micro_batch_tokens
        self.rank = rank
        self.world_size = world_size

    def split_micro_batches(self, indices: list[int]) -> list[list[int]]:
        if self.micro_batch_tokens is None:
            size = self.micro_batch_size or len(indices)
            return [indices[i : i + size] for i in range(0, len(indices), size)]
        lengths = self.split.input_ids
        ordered = sorted(indices, key=lambda i: -len(lengths[i]))
        chunks: list[list[int]] = []
        for index in ordered:
            if chunks:
                chunk = chunks[-1]
                chunk_width = self.width(len(lengths[chunk[0]]))
                fits_tokens = (len(chunk) + 1) * chunk_width <= self.micro_batch_tokens
                fits_size = self.micro_batch_size is None or len(chunk) < self.micro_batch_size
                if fits_tokens and fits_size:
                    chunk.append(index)
                    continue
            chunks.append([index])
        return chunks

    def __call__(self, indices: list[int]) -> TrainBatch:
        indices = list(indices)
        rank, world_size = rank_and_world_size()
        rank = rank if self.rank is None else self.rank
        world_size = world_size if self.world_size is None else self.world_size
        share = batch_share(indices, rank, world_size)
        filler = not share
        micro = [self.pad(chunk) for chunk in self.split_micro_batches(share or indices[:1])]
        tokens = int(sum(len(self.split.input_ids[i]) for i in indices))
        return TrainBatch(micro, len(indices), tokens, world_size, filler)
