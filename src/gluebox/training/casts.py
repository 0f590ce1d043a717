"""Casts to the low dtype under mixed precision (``--precision bf16-mixed``), each made once.

Autocast casts a linear map's float32 input and weight to bfloat16 at every call. Two of those casts
are repeated work in a transformer step:

- **Weights**, once per micro-batch: autocast keeps weight casts in a cache that it empties when its
  outermost context ends, and Fabric enters one around every forward pass.
  :func:`weight_casts_kept_for_the_step` keeps them for the whole optimizer step.
- **Inputs**, once per use: the query, key and value maps of a layer read the same hidden states,
  and autocast casts them three times (and, in the backward pass, casts three gradients back to
  float32). :class:`InputCasts` casts each float32 input once per forward pass and hands the same
  bfloat16 tensor to every linear map that reads it. The forward pass computes the same values; in
  the backward pass the three maps' gradients are summed in bfloat16 and cast to float32 once, where
  each was cast and then summed in float32 (bfloat16's rounding of a sum of three, the kind of
  rounding mixed precision accepts everywhere else).
"""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from gluebox.config import MIXED_PRECISIONS


def weight_casts_kept_for_the_step(fabric, micro_batches: int):
    """Under mixed precision, each weight cast to the low dtype once per optimizer step instead of once
    per micro-batch.

    Autocast keeps the casts of weights (leaf tensors that need a gradient) in a cache that it
    empties when the outermost autocast context ends; Fabric enters one around every forward pass.
    An outer context with autocast disabled keeps the cache across the step's micro-batches and
    leaves everything else as it was: the backward passes still run outside autocast, the values
    cast are the same, and the cache is emptied before the optimizer changes the weights."""
    if not mixed_precision(fabric) or micro_batches < 2:
        return contextlib.nullcontext()
    return torch.autocast(fabric.device.type, enabled=False)


def mixed_precision(fabric) -> bool:
    """Whether ``fabric`` trains under autocast (``bf16-mixed`` or ``16-mixed``)."""
    return getattr(fabric.strategy.precision, "precision", "32") in MIXED_PRECISIONS


class InputCasts(TorchFunctionMode):
    """While entered (around one forward pass), each float32 tensor that linear maps read under autocast
    is cast to autocast's dtype once, and every linear map that reads it gets that one cast.

    Entries are keyed by the tensor's identity and hold it weakly: a tensor freed during the pass takes
    its entry with it, so a new tensor at the same address is never mistaken for it. The casts are the
    ones the linear maps would keep for their backward pass anyway: holding them adds no memory."""

    def __init__(self):
        super().__init__()
        self.casts: dict[int, tuple[weakref.ref, torch.Tensor]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and args:
            x = args[0]
            device = x.device.type
            if x.dtype == torch.float32 and torch.is_autocast_enabled(device):
                args = (self.low(x, torch.get_autocast_dtype(device)), *args[1:])
        return func(*args, **kwargs)

    def low(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``x`` cast to ``dtype``, made at its first use in this pass."""
        entry = self.casts.get(id(x))
        if entry is not None and entry[0]() is x and entry[1].dtype == dtype:
            return entry[1]
        key = id(x)
        low = x.to(dtype)
        self.casts[key] = (weakref.ref(x, lambda _, key=key: self.casts.pop(key, None)), low)
        return low


def input_casts(fabric):
    """:class:`InputCasts` for one forward pass under mixed precision; nothing otherwise."""
    return InputCasts() if mixed_precision(fabric) else contextlib.nullcontext()
