"""Training with less memory and exactly the same maths: recompute what is cheap to recompute.

Two parts of a transformer layer's saved activations are recomputed in the backward pass
instead of kept from the forward pass, in every layer:

- **Attention.** With dropout on, PyTorch's CPU attention cannot use its fused kernel: it
  materializes the scores, the softmax output, the dropout noise and the dropped
  probabilities (each batch x heads x length x length floats) and keeps three of them for
  the backward pass. :func:`make_lean` runs the model's own attention function under
  activation checkpointing: the forward keeps only queries, keys and values; the backward
  runs it again. Its dropout masks come from counters (:mod:`gluebox.training.dropout`):
  the recomputation applies the masks of the places where the forward pass drew them, kept
  1 bit an element (a 32nd of the probabilities it does not keep). Under
  ``GLUEBOX_DROPOUT_GENERATOR=torch`` (PyTorch's generator, a benchmark way) the forward keeps
  the masks it drew, one byte an element (:class:`DropoutMasks`), and the backward gets them
  back instead of drawing anew,
  with ``sdpa`` pinned to its math kernel (the one it runs with dropout on the CPU anyway:
  under checkpointing it would otherwise pick another kernel). That way is for the CPU
  in float32 only: on a GPU (whose fused attention draws inside the kernel) or under autocast
  it runs the model's own attention and keeps what it keeps, and nothing pins ``sdpa``'s kernel.
  Without dropout or outside training the model's own attention runs as before. Under mixed
  precision (``--precision bf16-mixed``) gluebox's masks recompute too: the checkpoint runs the
  recomputation under the forward pass's autocast state, so it rounds as the forward did.
- **The activation function's output** (GELU between the feed-forward layer's two linear
  maps). The second linear map keeps its input, the activation's output, for its weight
  gradient, while the activation itself keeps its own input. A saved-tensor hook keeps a
  note instead ("the activation of that input") and recomputes it when the backward pass
  needs it: an elementwise function, cheap, and bit for bit the same.

Both recompute with the same operations on the same inputs, so a run with them is
identical to one without (``gluebox compare``); tests check it bit for bit.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.checkpoint import checkpoint

from gluebox.training.dropout import StepMasks, current

RECOMPUTED = "gluebox_recomputed"


def make_lean(model) -> None:
    """Recompute ``model``'s attention and activation outputs in the backward pass (same maths)."""
    _recompute_attention(model)
    _recompute_activations(model)


def _recompute_attention(model) -> None:
    import sys

    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = model.config._attn_implementation
    eager = getattr(sys.modules[type(model).__module__], "eager_attention_forward", None)
    if name not in ("sdpa", "eager") or eager is None:
        return  # another attention (flash, flex, a model without an eager function): left as it is
    inner = ALL_ATTENTION_FUNCTIONS.get_interface(name, eager)

    def recomputed(module, query, key, value, attention_mask, **kwargs):
        if not (module.training and torch.is_grad_enabled() and kwargs.get("dropout", 0.0) > 0):
            return inner(module, query, key, value, attention_mask, **kwargs)

        step_masks = current()
        if step_masks is not None:  # any device, any precision: the recomputation runs under the forward's autocast
            attend = _with_the_forwards_masks(step_masks, inner, module, attention_mask, kwargs)
            return checkpoint(attend, query, key, value, use_reentrant=False, preserve_rng_state=False), None
        if query.device.type != "cpu" or torch.is_autocast_enabled(query.device.type):
            # PyTorch's generator elsewhere: a GPU's fused attention draws its masks inside the kernel (nothing
            # to keep), and under autocast eager and sdpa round differently: the model's own attention, kept
            return inner(module, query, key, value, attention_mask, **kwargs)
        masks = DropoutMasks()  # PyTorch's generator (GLUEBOX_DROPOUT_GENERATOR=torch): masks kept and handed back

        def attend(q, k, v):
            with masks:  # the first run (forward) keeps its masks, the second (backward) gets them back
                if name == "eager":
                    return eager(module, q, k, v, attention_mask, **kwargs)[0]
                with sdpa_kernel(SDPBackend.MATH):  # the kernel plain sdpa runs with dropout on CPU; pinned, since
                    return inner(module, q, k, v, attention_mask, **kwargs)[0]  # checkpointing changes the choice

        return checkpoint(attend, query, key, value, use_reentrant=False, preserve_rng_state=True), None

    AttentionInterface.register(f"{RECOMPUTED}_{name}", recomputed)
    AttentionMaskInterface.register(f"{RECOMPUTED}_{name}", ALL_MASK_ATTENTION_FUNCTIONS[name])
    model.set_attn_implementation(f"{RECOMPUTED}_{name}")


def _with_the_forwards_masks(step_masks: StepMasks, inner, module, attention_mask, kwargs):
    """The attention as a function of queries, keys and values for checkpointing: its first run (the
    forward pass) draws from the step's masks, moving their count on; its recomputation in the backward
    pass applies the masks of the same places again (kept by the step's masks)."""
    start = step_masks.place()
    runs = 0

    def attend(q, k, v):
        nonlocal runs
        runs += 1
        if runs == 1:
            return inner(module, q, k, v, attention_mask, **kwargs)[0]
        with step_masks.at(start):
            return inner(module, q, k, v, attention_mask, **kwargs)[0]

    return attend


class DropoutMasks(TorchDispatchMode):
    """The dropout masks of one checkpointed attention call: kept from its forward pass, handed back when
    the backward pass runs it again.

    Entered around each run of the same function: the first run's ``bernoulli_`` calls (``dropout``'s
    draws) run and their results are kept as booleans; a later run's ``bernoulli_`` calls, in the same
    order, fill their tensor from those instead of drawing. Every other operation runs as it is, so the
    recomputation is the forward's to the bit, and the random generator is where the forward left it."""

    BERNOULLI = torch.ops.aten.bernoulli_.float

    def __init__(self):
        super().__init__()
        self.kept: list[torch.Tensor] | None = None
        """The first run's masks, in the order they were drawn (None until it ran)."""
        self.replayed = 0
        """How many of them the current later run has handed back."""
        self.recording = True

    def __enter__(self):
        self.recording = self.kept is None
        if self.recording:
            self.kept = []
        self.replayed = 0
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is not self.BERNOULLI:
            return func(*args, **(kwargs or {}))
        if self.recording:
            drawn = func(*args, **(kwargs or {}))
            self.kept.append(drawn != 0)
            return drawn
        if self.replayed >= len(self.kept):
            raise RuntimeError("the recomputed attention drew more dropout masks than its forward pass")
        self.replayed += 1
        return args[0].copy_(self.kept[self.replayed - 1])


def _activation_modules(model) -> list[torch.nn.Module]:
    from transformers import activations

    kinds = tuple(v for v in vars(activations).values() if isinstance(v, type) and issubclass(v, torch.nn.Module)
                  and v.__module__ == activations.__name__)
    return [m for m in model.modules() if isinstance(m, kinds)]


class ActivationNotes:
    """Saved-tensor hooks that keep "activation of x" instead of an activation's output."""

    def __init__(self):
        self.outputs: dict[int, tuple[weakref.ref, torch.Tensor, torch.nn.Module, dict]] = {}
        """Storage address of each activation output of the current forward pass -> (output, input,
        module, the autocast state it ran under)."""

    def remember(self, module, inputs, output) -> None:
        if torch.is_grad_enabled() and module.training and output.requires_grad:
            device = inputs[0].device.type
            autocast = {"device_type": device, "enabled": torch.is_autocast_enabled(device),
                        "dtype": torch.get_autocast_dtype(device)}
            self.outputs[output.untyped_storage().data_ptr()] = (weakref.ref(output), inputs[0], module, autocast)

    def pack(self, tensor: torch.Tensor):
        entry = self.outputs.get(tensor.untyped_storage().data_ptr()) if tensor.layout == torch.strided else None
        if entry is None or entry[0]() is None:
            return tensor
        output, source, module, autocast = entry[0](), entry[1], entry[2], entry[3]
        if output.untyped_storage().data_ptr() != tensor.untyped_storage().data_ptr():
            return tensor
        return (module, source.detach(), autocast, tensor.size(), tensor.stride(), tensor.storage_offset())

    @staticmethod
    def unpack(packed):
        if isinstance(packed, torch.Tensor):
            return packed
        module, source, autocast, size, stride, offset = packed
        with torch.no_grad(), torch.autocast(**autocast):
            return module(source).as_strided(size, stride, offset)

    def clear(self) -> None:
        self.outputs.clear()


def _recompute_activations(model) -> None:
    modules = _activation_modules(model)
    if not modules:
        return
    notes = ActivationNotes()
    for module in modules:
        module.register_forward_hook(notes.remember)
    contexts: list = []

    def enter(_module, _args):
        context = torch.autograd.graph.saved_tensors_hooks(notes.pack, notes.unpack)
        context.__enter__()
        contexts.append(context)

    def leave(_module, _args, _output):
        notes.clear()
        contexts.pop().__exit__(None, None, None)

    model.register_forward_pre_hook(enter)
    model.register_forward_hook(leave, always_call=True)
