"""Batches: seeded and deterministic, every example once per epoch, padding that is masked."""

from __future__ import annotations

import numpy as np
import torch

from gluebox.data.batching import Collator, TrainBatchSampler, TrainCollator
from gluebox.data.encoding import EncodedSplit


def _split(lengths: list[int]) -> EncodedSplit:
    ids = [np.arange(1, n + 1, dtype=np.int32) for n in lengths]
    types = [np.array([0] * (n // 2) + [1] * (n - n // 2), dtype=np.int8) for n in lengths]
    return EncodedSplit(ids, types, np.arange(len(lengths)) % 2, [str(i) for i in range(len(lengths))])


def test_every_example_once_per_epoch_and_seeded():
    lengths = np.random.default_rng(0).integers(5, 100, size=1000)
    for grouped in (True, False):
        sampler = TrainBatchSampler(lengths, 32, seed=7, group_by_length=grouped)
        epoch0 = sampler.batches(0)
        assert sorted(i for b in epoch0 for i in b) == list(range(1000))
        assert len(epoch0) == len(sampler) == 32
        assert epoch0 == TrainBatchSampler(lengths, 32, seed=7, group_by_length=grouped).batches(0)
        assert epoch0 != sampler.batches(1)
        assert epoch0 != TrainBatchSampler(lengths, 32, seed=8, group_by_length=grouped).batches(0)


def test_set_epoch_selects_the_epoch_batches():
    lengths = np.arange(100) + 1
    sampler = TrainBatchSampler(lengths, 10, seed=1, group_by_length=True)
    sampler.set_epoch(3)
    assert list(iter(sampler)) == sampler.batches(3)


def test_length_grouping_cuts_padding():
    lengths = np.random.default_rng(1).integers(5, 128, size=3200)

    def padded_tokens(grouped: bool) -> int:
        batches = TrainBatchSampler(lengths, 32, seed=0, group_by_length=grouped).batches(0)
        return sum(len(b) * lengths[b].max() for b in batches)

    assert padded_tokens(True) < 0.75 * padded_tokens(False)


def test_collator_pads_dynamically_or_to_max_length():
    split = _split([3, 7, 5])
    dynamic = Collator(split, pad_token_id=0, pad_to=None)([0, 1, 2])
    assert dynamic["input_ids"].shape == (3, 7)
    assert dynamic["attention_mask"].sum(dim=1).tolist() == [3, 7, 5]
    assert dynamic["input_ids"][0].tolist() == [1, 2, 3, 0, 0, 0, 0]
    assert dynamic["token_type_ids"][1].tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert dynamic["labels"].tolist() == [0, 1, 0]
    fixed = Collator(split, pad_token_id=0, pad_to=16)([0, 1, 2])
    assert fixed["input_ids"].shape == (3, 16)
    assert torch.equal(fixed["attention_mask"][:, :7], dynamic["attention_mask"])


def test_train_collator_splits_micro_batches_and_counts_real_tokens():
    split = _split([3, 7, 5, 2, 9])
    batch = TrainCollator(split, pad_token_id=0, pad_to=None, micro_batch_size=2)([4, 0, 1, 2, 3])
    assert [mb["input_ids"].shape for mb in batch.micro_batches] == [(2, 9), (2, 7), (1, 2)]
    assert batch.num_examples == 5
    assert batch.num_tokens == 26
