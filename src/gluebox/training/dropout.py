"""Dropout masks from a counter-based generator: the same masks on every machine, drawn in parallel.

PyTorch draws a CPU dropout mask one element after the other from its one random generator (about
6 ns an element, on one core while the others wait). gluebox's training step draws every mask
from Philox4x64-10 (:mod:`gluebox.training.philox`) instead, where each mask is a pure function
of the run's seed and the mask's place:

- **key** ``(seed, rank)``: the run's ``--seed`` and the process's rank (each process of a
  multi-process run draws its own masks);
- **counter** ``(block, call, micro-batch, optimizer step)``: the step and micro-batch come from
  the training loop (the step is part of every checkpoint, so a resumed run draws the same masks),
  ``call`` numbers the dropout calls of the micro-batch's forward pass from 0, and ``block``
  numbers the mask's blocks of 16 elements;
- **element** ``e`` of a mask takes 16 bits: quarter ``e % 4`` (the lowest first) of word
  ``(e % 16) // 4`` of block ``e // 16``. It is kept when that number is below
  ``round((1 - p) 2**16)``, so an element is kept with probability ``1 - p`` to within ``2**-17``
  (FlashAttention's GPU dropout uses 8 bits an element; 16 halve the draw against 32);
- a kept element is scaled by ``s = float32(1 / float32(1 - p))``: the output is ``(x * s) * k``
  with ``k`` 1 or 0, in the input's dtype, and the backward pass's is ``(grad * s) * k``.

Nothing in that depends on the thread count, the CPU's vendor or instruction set, or on where the
mask is computed: on the CPU, NumPy's Philox draws a mask and NumPy applies it, a chunk at a time
that stays in the core's cache; elsewhere (a GPU) the same bits come from torch integer operations.
On one thread: in a training step torch's OpenMP workers spin for a while after each parallel
operation, and a second NumPy thread would share a core with one of them. Measured in whole steps
(docs/performance.md), drawing on two threads made a DistilBERT step slower than on one.

Each mask is drawn once, in the forward pass, and kept 1 bit an element (:class:`Mask`; a DistilBERT
micro-batch's take about 3 MB, a 32nd of its float32 activations): the backward pass and the
recomputation of the attention (:mod:`gluebox.training.lean`) apply the kept bits instead of drawing
again, the draw being most of dropout's cost.

**Where dropout is called.** While a training step's forward pass runs, :class:`StepMasks` (a
``TorchFunctionMode``) answers ``torch.nn.functional.dropout`` (every ``nn.Dropout`` module, the
attention functions' own dropout, peft's LoRA dropout) and ``scaled_dot_product_attention`` with a
``dropout_p`` (which on the CPU runs its math kernel and draws with PyTorch's generator): the
latter runs the same math kernel's operations in :func:`attention`, with these masks. Every other
operation, and everything outside a training step (validation, prediction), runs as before.

``GLUEBOX_DROPOUT_GENERATOR=torch`` keeps PyTorch's generator instead (the masks before this
version), for benchmarks that compare the two streams.
"""

from __future__ import annotations

import math
import os
import sys
import threading

import numpy as np
import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from gluebox.training import philox

GENERATOR_VARIABLE = "GLUEBOX_DROPOUT_GENERATOR"
"""``torch``: dropout draws from PyTorch's generator, as before this version (a benchmark way)."""

ELEMENTS_PER_BLOCK = 16
"""A Philox4x64 block is 256 bits: sixteen 16-bit numbers, one an element."""
CHUNK = 1 << 17
"""Elements drawn and applied at a time: their arrays stay in the core's L2 cache."""
_active = threading.local()


def uses_philox() -> bool:
    """Whether training steps draw gluebox's masks (the default) or PyTorch's (``GLUEBOX_DROPOUT_GENERATOR=torch``)."""
    return os.environ.get(GENERATOR_VARIABLE, "philox") != "torch"


def threshold(p: float) -> int:
    """Keep an element when its 16-bit number is below this: ``round((1 - p) 2**16)``, at most ``2**16 - 1``."""
    return min(round((1.0 - p) * 2**16), 2**16 - 1)


def scale(p: float) -> float:
    """The factor of kept elements, ``float32(1 / float32(1 - p))`` (a float32 value)."""
    return float(np.float32(1.0) / np.float32(1.0 - p))


class Place(tuple):
    """A dropout call's place: ``(step, micro_batch, call)``, words 3, 2 and 1 of its masks' counters."""

    def __new__(cls, step: int, micro_batch: int, call: int):
        return super().__new__(cls, (step, micro_batch, call))

    @property
    def counter_high(self) -> tuple[int, int, int]:
        step, micro_batch, call = self
        return call, micro_batch, step


def keep_mask(n: int, p: float, key: tuple[int, int], place: Place, device="cpu") -> torch.Tensor:
    """The mask of ``n`` elements at ``place`` (True: kept), computed with torch operations on ``device``."""
    words = philox.words_torch(key, place.counter_high, 0, -(-n // 4), device)
    quarters = torch.stack([(words >> shift) & 0xFFFF for shift in (0, 16, 32, 48)], dim=-1).reshape(-1)[:n]
    return quarters < threshold(p)


def _bits(key, place: Place, start: int, stop: int) -> np.ndarray:
    """The 16-bit numbers of elements ``start`` (a multiple of 16) to ``stop``, by NumPy's Philox."""
    words = philox.words_numpy(key, place.counter_high, start // ELEMENTS_PER_BLOCK, -(-(stop - start) // 4))
    if sys.byteorder != "little":
        words = words.astype("<u8")
    return words.view("<u2")[: stop - start]


def _drawn_and_kept(bits: np.ndarray, p: float, key, place: Place, a: int, b: int) -> np.ndarray:
    """The mask of elements ``a`` (a multiple of 16) to ``b`` as booleans, drawn, and kept in ``bits``
    (1 bit an element, ``numpy.packbits``' order)."""
    kept = np.less(_bits(key, place, a, b), np.uint16(threshold(p)))
    bits[a // 8 : -(-b // 8)] = np.packbits(kept)
    return kept


def _draw_numpy(source: np.ndarray, out: np.ndarray, bits: np.ndarray, p: float, key, place: Place) -> None:
    """``out = (source * s) * k``, a chunk at a time, and ``k`` kept in ``bits``, 1 bit an element
    (``numpy.packbits``' order)."""
    factor = np.float32(scale(p))
    for a in range(0, source.size, CHUNK):
        b = min(source.size, a + CHUNK)
        kept = _drawn_and_kept(bits, p, key, place, a, b)
        np.multiply(source[a:b], factor, out=out[a:b])
        np.multiply(out[a:b], kept, out=out[a:b])


def _unpacked(bits: np.ndarray, a: int, b: int) -> np.ndarray:
    """The kept mask of elements ``a`` (a multiple of 8) to ``b``, as booleans, from its bits."""
    return np.unpackbits(bits[a // 8 : -(-b // 8)], count=b - a).view(np.bool_)


def _replay_numpy(source: np.ndarray, out: np.ndarray, bits: np.ndarray, p: float) -> None:
    """``out = (source * s) * k``, a chunk at a time, with ``k`` from its kept bits."""
    factor = np.float32(scale(p))
    for a in range(0, source.size, CHUNK):
        b = min(source.size, a + CHUNK)
        np.multiply(source[a:b], factor, out=out[a:b])
        np.multiply(out[a:b], _unpacked(bits, a, b), out=out[a:b])


def _mask_numpy(bits: np.ndarray, n: int, p: float, key, place: Place) -> None:
    """``bits`` = the mask of ``n`` elements, 1 bit an element, a chunk at a time."""
    for a in range(0, n, CHUNK):
        _drawn_and_kept(bits, p, key, place, a, min(n, a + CHUNK))


def _mask_bfloat16_numpy(scaled: np.ndarray, bits: np.ndarray, draw: tuple | None) -> None:
    """``scaled *= k`` in place over a bfloat16 tensor's bits (uint16), a chunk at a time, ``k`` drawn
    (``draw``: ``(p, key, place)``) and kept in ``bits``, or (``draw`` None) taken from ``bits``. NumPy
    has no bfloat16, but a bfloat16 is a float32's upper half: each chunk is widened exactly, multiplied
    by its mask as float32 (the same IEEE product as torch's, signed zeros and NaN included) and narrowed
    back exactly (``x * 1`` and ``x * 0`` are bfloat16 values)."""
    for a in range(0, scaled.size, CHUNK):
        b = min(scaled.size, a + CHUNK)
        if draw is None:
            kept = _unpacked(bits, a, b)
        else:
            kept = _drawn_and_kept(bits, *draw, a, b)
        wide = np.left_shift(scaled[a:b], 16, dtype=np.uint32)
        values = wide.view(np.float32)
        np.multiply(values, kept, out=values)
        np.right_shift(wide, 16, out=wide)
        scaled[a:b] = wide


class Mask:
    """The mask of the dropout call at ``place``: drawn from its counters the first time it is applied,
    then kept, 1 bit an element (a GPU's: 1 byte, as PyTorch's dropout keeps it), for the backward pass
    and the attention's recomputation (:mod:`gluebox.training.lean`), which apply it again without
    drawing. A DistilBERT micro-batch's masks take about 3 MB."""

    def __init__(self, key: tuple[int, int], place: Place):
        self.key, self.place = key, place
        self.kept: np.ndarray | torch.Tensor | None = None
        """The kept elements: packed bits (NumPy uint8) on the CPU, booleans on other devices; None until drawn."""

    def apply(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """``x`` with this mask applied: ``(x * s) * k`` (see the module's description)."""
        if x.device.type != "cpu":
            if self.kept is None:
                self.kept = keep_mask(x.numel(), p, self.key, self.place, x.device)
            return (x * scale(p)) * self.kept.view(x.shape).to(x.dtype)
        n, drawing = x.numel(), self.kept is None
        if drawing:
            self.kept = np.empty(-(-n // 8), dtype=np.uint8)
        if x.dtype == torch.bfloat16:  # x * s in torch (bfloat16's rounding), then times k in NumPy chunks
            scaled = (x * scale(p)).contiguous()
            draw = (p, self.key, self.place) if drawing else None
            _mask_bfloat16_numpy(scaled.view(-1).view(torch.uint16).numpy(), self.kept, draw)
            return scaled
        if x.dtype != torch.float32:  # other dtypes (float16, float64): the same mask, the product in torch
            if drawing:
                _mask_numpy(self.kept, n, p, self.key, self.place)
            kept = torch.from_numpy(np.unpackbits(self.kept, count=n).view(np.bool_))
            return (x * scale(p)).mul_(kept.view(x.shape))
        source = x.detach().contiguous()
        out = torch.empty_like(source)
        if drawing:
            _draw_numpy(source.view(-1).numpy(), out.view(-1).numpy(), self.kept, p, self.key, self.place)
        else:
            _replay_numpy(source.view(-1).numpy(), out.view(-1).numpy(), self.kept, p)
        return out


def apply(x: torch.Tensor, p: float, key: tuple[int, int], place: Place) -> torch.Tensor:
    """``x`` with the mask at ``place`` applied, drawn from its counters: ``(x * s) * k``."""
    return Mask(key, place).apply(x, p)


class _Dropout(torch.autograd.Function):
    """Dropout with a mask; the backward pass applies the same mask, kept from the forward pass."""

    @staticmethod
    def forward(ctx, x, p, mask: Mask):
        ctx.p, ctx.mask = p, mask
        return mask.apply(x, p)

    @staticmethod
    def backward(ctx, grad):
        return ctx.mask.apply(grad, ctx.p), None, None


def dropout(x: torch.Tensor, p: float, mask: Mask) -> torch.Tensor:
    """Training-mode dropout of ``x`` with probability ``p`` and ``mask``."""
    if p <= 0.0 or x.numel() == 0:
        return x
    if p >= 1.0:
        return x * 0.0
    return _Dropout.apply(x, p, mask)


class _DenseProduct(torch.autograd.Function):
    """``t * factor`` written in a new contiguous tensor. Queries and keys split into heads are strided
    views of the projections: their product would keep those strides, and the matrix multiply would
    then copy it again to fold the batch and head dimensions (a pass over every query and key, twice
    a layer with ``--recompute``). Same values; the gradient is ``grad * factor`` as the product's,
    written in the layout of ``t`` (its dimensions in the order of its strides): so the gradient of
    the heads' view is a plain view of the projection's gradient, where a contiguous one would be
    copied again to merge the heads (a pass over every query's and key's gradient)."""

    @staticmethod
    def forward(ctx, t, factor):
        ctx.factor, ctx.layout = factor, torch.empty_like(t, device="meta")
        return torch.mul(t, factor, out=torch.empty(t.shape, dtype=t.dtype, device=t.device))

    @staticmethod
    def backward(ctx, grad):
        out = torch.empty_like(ctx.layout, dtype=grad.dtype, device=grad.device)
        return torch.mul(grad, ctx.factor, out=out), None


def attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, softmax_scale=None,
              enable_gqa=False, *, dropout_with, reduced_precision: bool = False) -> torch.Tensor:
    """``scaled_dot_product_attention``'s math kernel, the same operations in the same order, with
    its dropout by ``dropout_with(probabilities, p)``.

    float16 and bfloat16 inputs are computed in float32, as that kernel does on the CPU; with
    ``reduced_precision`` (under autocast: ``--precision bf16-mixed``) in their own type instead,
    as autocast runs a model's eager attention: both matrix multiplies in bfloat16 (accumulating in
    float32) and the softmax on bfloat16 scores (float32 inside PyTorch's kernel). That saves
    casting queries, keys, values and their gradients up and back down in every layer, the largest
    cost of a bf16 step after the matrix multiplies (``benchmarks/profile_step.py``)."""
    if query.dtype in (torch.float16, torch.bfloat16) and not reduced_precision:
        upcast = [t.float() for t in (query, key, value)]  # float32 math, as sdpa's CPU math kernel
        return attention(*upcast, attn_mask, dropout_p, is_causal, softmax_scale, enable_gqa,
                         dropout_with=dropout_with).to(query.dtype)
    factor = math.sqrt(softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(query.size(-1)))
    if enable_gqa and key.size(-3) != query.size(-3):
        key = key.repeat_interleave(query.size(-3) // key.size(-3), dim=-3)
        value = value.repeat_interleave(query.size(-3) // value.size(-3), dim=-3)
    if is_causal:
        attn_mask = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
    scores = torch.matmul(_DenseProduct.apply(query, factor), _DenseProduct.apply(key, factor).transpose(-2, -1))
    whole_rows_masked = False
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            whole_rows_masked = not bool(attn_mask.any(dim=-1).all())
            attn_mask = torch.where(attn_mask, torch.zeros((), dtype=scores.dtype, device=scores.device),
                                    torch.full((), float("-inf"), dtype=scores.dtype, device=scores.device))
        else:
            whole_rows_masked = bool(torch.isneginf(attn_mask).all(dim=-1).any())
        scores = scores + attn_mask
    if whole_rows_masked:  # sdpa's softmax, which gives 0 to a row that attends to nothing (not NaN)
        probabilities = torch.ops.aten._safe_softmax(scores, -1)
    else:  # the same values: it is the plain softmax and then a fix of such rows, 4 passes over the scores
        probabilities = torch.softmax(scores, -1)
    return torch.matmul(dropout_with(probabilities, dropout_p), value)


def _arguments(args, kwargs, names: tuple[str, ...], defaults: tuple) -> list:
    """The values of ``names`` from a call's positional and keyword arguments."""
    values = list(args[: len(names)]) + list(defaults[len(args):])
    for index, name in enumerate(names):
        if name in kwargs:
            values[index] = kwargs[name]
    return values


_DROPOUT = ("input", "p", "training", "inplace")
_SDPA = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


class StepMasks(TorchFunctionMode):
    """While entered, dropout draws gluebox's masks at ``(step, micro_batch, call)``, ``call`` counting
    the dropout calls from ``call``. Entered around a micro-batch's forward pass by the training step;
    :func:`current` is the innermost one entered in this thread."""

    def __init__(self, key: tuple[int, int], step: int, micro_batch: int, call: int = 0,
                 masks: dict[Place, Mask] | None = None):
        super().__init__()
        self.key, self.step, self.micro_batch, self.call = key, step, micro_batch, call
        self.masks: dict[Place, Mask] = {} if masks is None else masks
        """The micro-batch's masks by place, shared with :meth:`at`'s: a recomputation applies the kept masks."""

    def place(self) -> Place:
        """The next dropout call's place."""
        return Place(self.step, self.micro_batch, self.call)

    def at(self, place: Place) -> StepMasks:
        """Masks that number calls from ``place``: a recomputation applies its forward pass's masks again."""
        return StepMasks(self.key, *place, masks=self.masks)

    def draw(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """Dropout of ``x`` with the next call's mask (the one kept from the forward pass in a recomputation)."""
        place = self.place()
        self.call += 1
        mask = self.masks.get(place)
        if mask is None:
            mask = self.masks[place] = Mask(self.key, place)
        return dropout(x, p, mask)

    def __enter__(self):
        stack = getattr(_active, "stack", None)
        if stack is None:
            stack = _active.stack = []
        stack.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        _active.stack.pop()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout:
            x, p, training, _ = _arguments(args, kwargs, _DROPOUT, (None, 0.5, True, False))
            if training and p > 0:
                return self.draw(x, p)
        elif func is F.scaled_dot_product_attention:
            values = _arguments(args, kwargs, _SDPA, (None, None, None, None, 0.0, False, None, False))
            if values[4] > 0:
                device = values[0].device.type
                if not torch.is_autocast_enabled(device):
                    return attention(*values, dropout_with=self.draw)
                low = torch.get_autocast_dtype(device)  # autocast runs sdpa on its inputs cast to this dtype
                with torch.autocast(device, enabled=False):
                    values[:4] = [t.to(low) if t is not None and t.is_floating_point() else t for t in values[:4]]
                    return attention(*values, dropout_with=self.draw, reduced_precision=True)
        return func(*args, **kwargs)


def current() -> StepMasks | None:
    """The step masks entered in this thread, if any (None outside a training step's forward pass)."""
    stack = getattr(_active, "stack", None)
    return stack[-1] if stack else None


class DropoutStream:
    """A run's dropout masks: its key, and the masks of each micro-batch's forward pass."""

    def __init__(self, seed: int, rank: int = 0):
        self.key = (seed & (2**64 - 1), rank)

    def step(self, step: int, micro_batch: int) -> StepMasks | None:
        """The masks of a micro-batch's forward pass (None under ``GLUEBOX_DROPOUT_GENERATOR=torch``)."""
        return StepMasks(self.key, step, micro_batch) if uses_philox() else None
