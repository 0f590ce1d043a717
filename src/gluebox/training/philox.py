"""Philox4x64-10, the counter-based random generator of gluebox's dropout masks.

Philox (Salmon, Moraes, Dror and Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3", SC11; the
Random123 library) maps a 256-bit counter and a 128-bit key to 256 random bits through 10 rounds
of 64 x 64 -> 128-bit products and XORs. Each block is a pure function of its counter and key: any
block can be computed alone, in any order, on any number of threads, and gives the same bits.

Two implementations give the same bits:

- :func:`words_numpy`, on the CPU: NumPy's ``numpy.random.Philox`` (the 4x64-10 variant, in C, no
  compiler needed). NumPy increments its counter before it computes a block, so the state is set
  one below the wanted block. It holds no lock on Python while it fills, so chunks of a mask can
  be filled on several threads at once.
- :func:`words_torch`, anywhere torch runs (a GPU): the same rounds in 64-bit integer tensor
  operations, the 128-bit products from 32-bit halves. Slower on the CPU; exact everywhere,
  since integer arithmetic has one answer.

Both are checked against Random123's published known-answer vectors (``tests/test_dropout_masks.py``).
"""

from __future__ import annotations

import threading

import numpy as np
import torch

ROUNDS = 10
MULTIPLIERS = (0xD2E7470EE14C6C93, 0xCA5A826395121157)
"""PHILOX_M4x64_0 and _1: the round multipliers."""
WEYL = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)
"""PHILOX_W64_0 and _1: added to the key after each round."""
WORDS_PER_BLOCK = 4
"""Each block is four 64-bit words."""

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_local = threading.local()


def counter_of(block: int, high: tuple[int, int, int]) -> int:
    """The 256-bit counter of ``block`` whose words 1 to 3 are ``high`` (word 0, the least
    significant, is the block number)."""
    word1, word2, word3 = high
    return block | word1 << 64 | word2 << 128 | word3 << 192


def _philox(key: tuple[int, int]) -> np.random.Philox:
    """This thread's NumPy Philox (setting a state is 20 times cheaper than making a generator)."""
    generator = getattr(_local, "generator", None)
    if generator is None:
        generator = _local.generator = np.random.Philox(key=np.array(key, dtype=np.uint64))
    return generator


def words_numpy(key: tuple[int, int], high: tuple[int, int, int], first_block: int, count: int) -> np.ndarray:
    """``count`` 64-bit words (uint64) from block ``first_block`` on: block ``b`` gives words
    ``4 (b - first_block)`` to ``4 (b - first_block) + 3``, with counter ``counter_of(b, high)``."""
    generator = _philox(key)
    before = (counter_of(first_block, high) - 1) & ((1 << 256) - 1)  # NumPy adds one before each block
    generator.state = {
        "bit_generator": "Philox",
        "state": {"counter": np.array([(before >> (64 * i)) & _MASK64 for i in range(4)], dtype=np.uint64),
                  "key": np.array(key, dtype=np.uint64)},
        "buffer": np.zeros(WORDS_PER_BLOCK, dtype=np.uint64), "buffer_pos": WORDS_PER_BLOCK,
        "has_uint32": 0, "uinteger": 0,
    }
    return generator.random_raw(count)


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _low32(x: torch.Tensor) -> torch.Tensor:
    return x & _MASK32


def _high32(x: torch.Tensor) -> torch.Tensor:
    return (x >> 32) & _MASK32  # int64 shifts are arithmetic: the mask drops the copied sign bits


def _mulhilo(x: torch.Tensor, multiplier: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The high and low 64 bits of the 128-bit product ``x * multiplier`` (int64 tensors holding
    unsigned 64-bit words), from the four products of their 32-bit halves."""
    m_low, m_high = multiplier & _MASK32, multiplier >> 32
    x_low, x_high = _low32(x), _high32(x)
    low_low = x_low * m_low  # each product of two 32-bit halves fits 64 bits (wrapped into int64)
    low_high = x_low * m_high
    high_low = x_high * m_low
    middle = _high32(low_low) + _low32(low_high) + _low32(high_low)
    high = x_high * m_high + _high32(low_high) + _high32(high_low) + _high32(middle)
    return high, x * _signed(multiplier)  # int64 products wrap: the low word is the plain product


def block_torch(counter: tuple[torch.Tensor, ...], key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Philox4x64-10 of the counters ``counter`` (four int64 tensors of word 0 to 3, same shape) under
    ``key``: the four output words, as Random123's ``philox4x64`` computes them."""
    x0, x1, x2, x3 = counter
    k0, k1 = key
    for round_ in range(ROUNDS):
        if round_:
            k0, k1 = (k0 + WEYL[0]) & _MASK64, (k1 + WEYL[1]) & _MASK64
        high0, low0 = _mulhilo(x0, MULTIPLIERS[0])
        high1, low1 = _mulhilo(x2, MULTIPLIERS[1])
        x0, x1, x2, x3 = high1 ^ x1 ^ _signed(k0), low1, high0 ^ x3 ^ _signed(k1), low0
    return x0, x1, x2, x3


def words_torch(key: tuple[int, int], high: tuple[int, int, int], first_block: int, count: int,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """The words of :func:`words_numpy`, as int64 tensors on ``device`` (the same bits)."""
    blocks = -(-count // WORDS_PER_BLOCK)
    word0 = torch.arange(blocks, dtype=torch.int64, device=device) + _signed(first_block)
    words = [word0] + [torch.full_like(word0, _signed(word)) for word in high]
    return torch.stack(block_torch(tuple(words), key), dim=-1).reshape(-1)[:count]
