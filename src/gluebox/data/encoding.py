"""Tokenize a split once, into variable-length token id arrays (padding happens per batch)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from gluebox.data.examples import Examples

_CHUNK = 4096


@dataclass
class EncodedSplit(torch.utils.data.Dataset):
    """Token ids of every example, unpadded, with labels and lengths."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    labels: np.ndarray | None
    ids: list[str]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> int:
        """Items are indices: the collator gathers and pads the arrays of a whole batch at once."""
        return index

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def encode(examples: Examples, tokenizer, max_seq_length: int, regression: bool) -> EncodedSplit:
    """Tokenize every example (pairs truncated longest-first to ``max_seq_length``)."""
    wants_type_ids = "token_type_ids" in tokenizer.model_input_names
    input_ids: list[np.ndarray] = []
    token_type_ids: list[np.ndarray] | None = [] if wants_type_ids else None
    for start in range(0, len(examples), _CHUNK):
        stop = start + _CHUNK
        pair = examples.text_b[start:stop] if examples.text_b is not None else None
        encoded = tokenizer(
            examples.text_a[start:stop],
            pair,
            truncation=True,
            max_length=max_seq_length,
            return_attention_mask=False,
            return_token_type_ids=wants_type_ids,
        )
        input_ids.extend(np.asarray(ids, dtype=np.int32) for ids in encoded["input_ids"])
        if token_type_ids is not None:
            token_type_ids.extend(np.asarray(ids, dtype=np.int8) for ids in encoded["token_type_ids"])
    labels = None
    if examples.labels is not None:
        labels = np.asarray(examples.labels, dtype=np.float32 if regression else np.int64)
    return EncodedSplit(input_ids, token_type_ids, labels, examples.ids)
