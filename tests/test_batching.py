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
    dynamic = Collator(split, pad_token_id=0, width=None)([0, 1, 2])
    assert dynamic["input_ids"].shape == (3, 7)
    assert dynamic["attention_mask"].sum(dim=1).tolist() == [3, 7, 5]
    assert dynamic["input_ids"][0].tolist() == [1, 2, 3, 0, 0, 0, 0]
    assert dynamic["token_type_ids"][1].tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert dynamic["labels"].tolist() == [0, 1, 0]
    fixed = Collator(split, pad_token_id=0, width=lambda longest: 16)([0, 1, 2])
    assert fixed["input_ids"].shape == (3, 16)
    assert torch.equal(fixed["attention_mask"][:, :7], dynamic["attention_mask"])


def test_train_collator_splits_micro_batches_and_counts_real_tokens():
    split = _split([3, 7, 5, 2, 9])
    batch = TrainCollator(split, pad_token_id=0, width=None, micro_batch_size=2)([4, 0, 1, 2, 3])
    assert [mb["input_ids"].shape for mb in batch.micro_batches] == [(2, 9), (2, 7), (1, 2)]
    assert batch.num_examples == 5
    assert batch.num_tokens == 26


def test_token_cap_splits_long_batches_and_keeps_short_ones_whole():
    split = _split([50, 48, 45, 10, 9, 8, 7, 6])
    collator = TrainCollator(split, pad_token_id=0, width=None, micro_batch_tokens=100)
    long_batch = collator([0, 1, 2])
    assert [mb["input_ids"].shape[0] for mb in long_batch.micro_batches] == [2, 1]
    assert all(mb["input_ids"].numel() <= 100 for mb in long_batch.micro_batches)
    short_batch = collator([3, 4, 5, 6, 7])
    assert len(short_batch.micro_batches) == 1
    mixed = collator(list(range(8)))
    assert sorted(int(l) for mb in mixed.micro_batches for l in mb["labels"]) == sorted(split.labels.tolist())
    assert all(mb["input_ids"].numel() <= 100 for mb in mixed.micro_batches)


def test_memory_plan_caps_tokens_only_when_the_budget_needs_it():
    from transformers import DistilBertConfig

    from gluebox.training.memory import SAFETY, estimate_peak_bytes, plan

    config, params = DistilBertConfig(), 66_955_010
    roomy = plan(32, None, "100GB", params, config, 103)
    assert roomy.micro_batch_tokens is None and roomy.worst_case_micro_batches == 1
    tight = plan(32, None, "2.5GB", params, config, 103)
    assert tight.micro_batch_tokens is not None and tight.micro_batch_tokens < 32 * 103
    assert tight.estimated_peak_bytes <= SAFETY * 2.5e9 and not tight.over_budget
    assert estimate_peak_bytes(params, config, tight.micro_batch_tokens + 1, 103) > SAFETY * 2.5e9
    assert tight.worst_case_micro_batches > 1
    hopeless = plan(32, None, "1GB", params, config, 103)
    assert hopeless.over_budget and "WARNING" in hopeless.describe()
    explicit = plan(32, 8, None, params, config, 103)
    assert explicit.micro_batch_size == 8 and explicit.micro_batch_tokens is None


def test_memory_plan_applies_the_token_cap_and_the_budget_lowers_it():
    from transformers import DistilBertConfig

    from gluebox.config import TrainConfig
    from gluebox.training.memory import plan

    config, params, cap = DistilBertConfig(), 66_955_010, TrainConfig().token_cap
    capped = plan(32, None, "100GB", params, config, 103, micro_batch_tokens=cap)
    assert capped.micro_batch_tokens == cap < 32 * 103 and capped.worst_case_micro_batches == 2
    whole = plan(32, None, "100GB", params, config, 103, micro_batch_tokens=0)
    assert whole.micro_batch_tokens is None
    assert capped.estimated_peak_bytes < whole.estimated_peak_bytes
    short = plan(32, None, "100GB", params, config, 40, micro_batch_tokens=cap)
    assert short.micro_batch_tokens is None, "batches under the cap run whole"
    narrow = plan(32, None, "100GB", params, config, 103, micro_batch_tokens=50)
    assert narrow.micro_batch_tokens == 103 and narrow.worst_case_micro_batches == 32  # one example at a time
    tight = plan(32, None, "2.5GB", params, config, 103, micro_batch_tokens=cap)
    assert tight.micro_batch_tokens < cap and not tight.over_budget


def test_mixed_precision_rounds_padded_lengths_to_a_multiple_of_8():
    """Under bf16-mixed (and 16-mixed) each micro-batch's padded length is rounded up to a multiple of 8, at
    most --max_seq_length: a handful of shapes for oneDNN to compile bfloat16 kernels for, where dynamic
    padding gave one per length. float32 keeps the longest example's length; --pad_to_multiple_of sets it."""
    from gluebox.config import TrainConfig

    def widths(**flags) -> list[int]:
        config = TrainConfig(task_name="mrpc", max_seq_length=100, **flags)
        collator = TrainCollator(_split([3, 9, 17, 64, 97, 100]), 0, config.pad_width)
        return [collator([i]).micro_batches[0]["input_ids"].shape[1] for i in range(6)]

    assert widths() == [3, 9, 17, 64, 97, 100]
    assert widths(precision="bf16-mixed") == [8, 16, 24, 64, 100, 100]
    assert widths(precision="16-mixed") == [8, 16, 24, 64, 100, 100]
    assert widths(precision="bf16-mixed", pad_to_multiple_of=1) == [3, 9, 17, 64, 97, 100]
    assert widths(pad_to_multiple_of=32) == [32, 32, 32, 64, 100, 100]
    assert widths(padding="max_length", precision="bf16-mixed") == [100] * 6
    lengths = np.random.default_rng(0).integers(5, 128, size=3200)
    config = TrainConfig(task_name="mrpc", precision="bf16-mixed")
    collator = TrainCollator(_split(list(lengths)), 0, config.pad_width, micro_batch_tokens=2048)
    shapes = {tuple(mb["input_ids"].shape[1:]) for batch in TrainBatchSampler(lengths, 32, 0, True).batches(0)
              for mb in collator(batch).micro_batches}
    assert len(shapes) <= 128 // 8 and all(width % 8 == 0 for (width,) in shapes)
    assert all(mb["input_ids"].numel() <= 2048 for batch in TrainBatchSampler(lengths, 32, 0, True).batches(0)
               for mb in collator(batch).micro_batches)  # the token cap counts the rounded lengths
