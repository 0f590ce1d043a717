"""Dropout masks from Philox4x64-10 (gluebox.training.philox, gluebox.training.dropout).

The generator against Random123's published known answers, its two implementations (NumPy on the
CPU, torch operations for a GPU) against each other, the keep rate, independence between places,
the same masks at 1 and 2 threads, and every model family gluebox trains drawing these masks and
none of PyTorch's in a training step.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from gluebox.training import dropout, philox
from gluebox.training.dropout import (CHUNK, DropoutStream, Mask, Place, StepMasks, apply, keep_mask, scale,
                                      threshold)
from gluebox.training.lean import RECOMPUTED

ONES = (1 << 64) - 1
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x16554D9ECA36314C, 0xDB20FE9D672D0FDC, 0xD7E772CEE186176B, 0x7E68B68AEC7BA23B)),
    ((ONES,) * 4, (ONES, ONES), (0x87B092C3013FE90B, 0x438C3C67BE8D0224, 0x9CC7D7C69CD777B6, 0xA09CAEBF594F0BA0)),
    ((0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89),
     (0x452821E638D01377, 0xBE5466CF34E90C6C),
     (0xA528F45403E61D95, 0x38C72DBD566E9788, 0xA5A1610E72FD18B5, 0x57BD43B5E52B7FE6)),
]
"""Random123's ``kat_vectors`` for philox4x64 with 10 rounds: counter, key, output (words 0 to 3)."""


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_philox_gives_random123s_known_answers(counter, key, expected):
    numpy_words = philox.words_numpy(key, counter[1:], counter[0], 4)
    torch_words = philox.words_torch(key, counter[1:], counter[0], 4)
    assert [int(w) for w in numpy_words] == list(expected)
    assert [int(w) & ONES for w in torch_words] == list(expected)


def test_numpy_and_torch_operations_give_the_same_words():
    """Any run of blocks, from any block on: the torch path (a GPU's) is the CPU's, bit for bit."""
    for key, high, first, count in [((42, 0), (0, 0, 0), 0, 1), ((42, 1), (3, 5, 7), 0, 1001),
                                    ((7, 3), (1, 2, 3), 12_345, 77), ((ONES, 0), (ONES, 0, 9), 5, 64)]:
        numpy_words = philox.words_numpy(key, high, first, count).view(np.int64)
        assert np.array_equal(numpy_words, philox.words_torch(key, high, first, count).numpy())
    whole = philox.words_numpy((9, 9), (1, 1, 1), 0, 4000)
    assert np.array_equal(philox.words_numpy((9, 9), (1, 1, 1), 250, 40), whole[1000:1040])  # counter-based


@pytest.mark.parametrize("n", [1, 7, 8, 1000, CHUNK - 3, CHUNK + 13, 3 * CHUNK + 5])
def test_the_cpus_dropout_is_the_mask_of_the_module_description(n):
    """The fast CPU path (NumPy, in chunks) gives ``(x * s) * k`` with ``k`` from torch operations."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(n))
    key, place, p = (11, 0), Place(4, 1, 6), 0.1
    expected = (x * scale(p)) * keep_mask(n, p, key, place).to(torch.float32)
    assert torch.equal(apply(x, p, key, place), expected)
    for dtype in (torch.float64, torch.bfloat16):  # other dtypes: the same mask and the same product
        low = x.to(dtype)
        assert torch.equal(apply(low, p, key, place), (low * scale(p)) * keep_mask(n, p, key, place).to(dtype))


class PhiloxDraws:
    """Counts the blocks drawn from NumPy's Philox while entered."""

    def __init__(self, monkeypatch):
        self.words = 0
        original = philox.words_numpy

        def counted(key, high, first_block, count):
            self.words += count
            return original(key, high, first_block, count)

        monkeypatch.setattr(philox, "words_numpy", counted)


@pytest.mark.parametrize("n", [1, 7, 8, 1000, CHUNK - 3, CHUNK + 13, 3 * CHUNK + 5])
def test_a_mask_is_drawn_once_and_kept_one_bit_an_element(n, monkeypatch):
    """The backward pass and the attention's recomputation apply a mask again without drawing it: the mask
    kept from its first use, ceil(n / 8) bytes, gives the same ``(y * s) * k`` as drawing it from its
    counters, in float32, bfloat16 and float64."""
    key, place, p = (11, 0), Place(4, 1, 6), 0.1
    generator = torch.Generator().manual_seed(n)
    x, y = torch.randn(n, generator=generator), torch.randn(n, generator=generator)
    k = keep_mask(n, p, key, place)
    draws = PhiloxDraws(monkeypatch)
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        mask = Mask(key, place)
        first = mask.apply(x.to(dtype), p)
        drawn = draws.words
        assert drawn >= -(-n // 4) and mask.kept.nbytes == -(-n // 8)
        again = mask.apply(y.to(dtype), p)
        assert draws.words == drawn, "applied again without drawing"
        assert torch.equal(first, (x.to(dtype) * scale(p)) * k.to(dtype))
        assert torch.equal(again, (y.to(dtype) * scale(p)) * k.to(dtype))


@pytest.mark.parametrize("n", [1, 7, 8, 1000, CHUNK - 3, CHUNK + 13, 3 * CHUNK + 5])
def test_bfloat16_dropout_has_torchs_bits(n):
    """bfloat16 (``--precision bf16-mixed``) is masked in NumPy through float32: the same bits as torch's
    ``(x * s) * k``, the signs of dropped zeros included, and NaN where torch's is NaN (inf times 0)."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(n)).bfloat16()
    x[torch.arange(n) % 97 == 3] = float("inf")
    x[torch.arange(n) % 89 == 5] = float("-inf")
    x[torch.arange(n) % 83 == 6] = float("nan")
    key, place, p = (11, 0), Place(4, 1, 6), 0.1
    got = apply(x, p, key, place)
    expected = (x * scale(p)) * keep_mask(n, p, key, place).to(torch.bfloat16)
    nan = expected.isnan()
    assert torch.equal(got.isnan(), nan)
    assert torch.equal(got[~nan].view(torch.int16), expected[~nan].view(torch.int16))
    assert n < 1000 or bool((expected[~nan].view(torch.int16) == torch.tensor(-0.0).bfloat16().view(torch.int16)).any())


def test_keep_rate():
    """Each element is kept with probability 1 - p: the threshold is exact to 2**-17, and a mask of 4M
    elements keeps (1 - p) of them within 5 standard deviations."""
    n = 1 << 22
    for p in (0.1, 0.25, 0.5, 0.01, 1e-6):  # below 2**-17, every element but one in 2**16 is kept
        assert abs(threshold(p) / 2**16 - (1 - p)) <= (2**-16 if p < 2**-17 else 2**-17)
    for p in (0.1, 0.25, 0.5):
        kept = (apply(torch.ones(n), p, (1, 0), Place(0, 0, 0)) != 0).double().mean().item()
        assert abs(kept - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5, (p, kept)
    assert scale(0.1) == float(np.float32(1) / np.float32(0.9))


def test_masks_are_independent_between_places():
    """Masks at neighbouring places (next call, micro-batch, step, another rank or seed) agree on an
    element as often as independent masks do, p**2 + (1-p)**2, and so do neighbouring elements."""
    n, p = 1 << 20, 0.1
    base = keep_mask(n, p, (5, 0), Place(10, 0, 3))
    others = [keep_mask(n, p, (5, 0), Place(10, 0, 4)), keep_mask(n, p, (5, 0), Place(10, 1, 3)),
              keep_mask(n, p, (5, 0), Place(11, 0, 3)), keep_mask(n, p, (5, 1), Place(10, 0, 3)),
              keep_mask(n, p, (6, 0), Place(10, 0, 3))]
    expected, sigma = p**2 + (1 - p) ** 2, 5 * (2 * p * (1 - p) / n) ** 0.5
    for other in others + [torch.roll(base, 1), torch.roll(base, 4), torch.roll(base, 16)]:  # word, block
        assert abs((base == other).double().mean().item() - expected) < sigma


THREADS = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from gluebox.training.dropout import Place, apply
x = torch.linspace(-3, 3, 1_000_003)
digest = hashlib.sha256()
for place in (Place(0, 0, 0), Place(3, 1, 2), Place(70, 0, 11)):
    digest.update(apply(x, 0.1, (42, 0), place).numpy().tobytes())
print(torch.get_num_threads(), digest.hexdigest())
"""


def test_masks_are_the_same_at_one_and_two_threads():
    """Each process with its own torch thread count: the masks depend on the seed and the place alone."""
    outputs = [subprocess.run([sys.executable, "-c", THREADS, threads], capture_output=True, text=True,
                              check=True).stdout.split() for threads in ("1", "2")]
    assert [o[0] for o in outputs] == ["1", "2"]
    assert outputs[0][1] == outputs[1][1]
    x = torch.linspace(-3, 3, 1_000_003)
    here = hashlib.sha256(b"".join(apply(x, 0.1, (42, 0), place).numpy().tobytes()
                                   for place in (Place(0, 0, 0), Place(3, 1, 2), Place(70, 0, 11)))).hexdigest()
    assert here == outputs[0][1]


class TorchDraws(TorchDispatchMode):
    """Counts PyTorch's random draws (what dropout and sdpa's math kernel draw their masks with)."""

    RANDOM = {torch.ops.aten.bernoulli_.float, torch.ops.aten.bernoulli_.Tensor, torch.ops.aten.bernoulli.default,
              torch.ops.aten.bernoulli.p, torch.ops.aten.native_dropout.default, torch.ops.aten.rand.default,
              torch.ops.aten.uniform_.default}

    def __init__(self):
        super().__init__()
        self.draws = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.draws += func in self.RANDOM
        return func(*args, **(kwargs or {}))


def family_config(family: str):
    import transformers as T

    small = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64)
    configs = {
        "bert": lambda: T.BertConfig(**small),
        "distilbert": lambda: T.DistilBertConfig(vocab_size=1000, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                 max_position_embeddings=64),
        "roberta": lambda: T.RobertaConfig(**small),
        "xlm-roberta": lambda: T.XLMRobertaConfig(**small),
        "electra": lambda: T.ElectraConfig(embedding_size=16, **small),
        "albert": lambda: T.AlbertConfig(embedding_size=16, **small),
        "deberta-v2": lambda: T.DebertaV2Config(**small),
        "mpnet": lambda: T.MPNetConfig(**small),
        "modernbert": lambda: T.ModernBertConfig(**small, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                                 cls_token_id=1, sep_token_id=2),
    }
    config = configs[family]()
    config.num_labels = 2
    for field in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout_prob", "pooler_dropout",
                  "dropout", "attention_dropout", "seq_classif_dropout", "mlp_dropout", "embedding_dropout",
                  "classifier_dropout"):
        if hasattr(config, field):
            setattr(config, field, 0.1)
    return config


FAMILIES = ["bert", "distilbert", "roberta", "xlm-roberta", "electra", "albert", "deberta-v2", "mpnet", "modernbert"]


@pytest.mark.parametrize("family", FAMILIES)
def test_dropout_rate_reaches_every_dropout_a_family_has(family, tmp_path):
    """``--dropout_rate`` sets every dropout probability of the model's saved config: the hidden
    layers', the attention's, the embeddings', the MLP's and the head's (ModernBERT's mlp_dropout and
    embedding_dropout, ALBERT's head and its integer 0 included); a head rate left ``None`` keeps meaning
    "the hidden rate"."""
    from gluebox.tasks import GLUE_TASKS
    from gluebox.training.pretrained import load_config

    saved = family_config(family)
    if family == "albert":
        saved.hidden_dropout_prob = 0  # as albert-base-v2's config.json writes it
    saved.save_pretrained(tmp_path)
    config = load_config(str(tmp_path), GLUE_TASKS["mrpc"], 0.25)
    unused_heads = {"qa_dropout", "summary_last_dropout"}  # question answering's, multiple choice's
    rates = {name: value for name, value in config.to_dict().items()
             if "dropout" in name and name not in unused_heads and value is not None}
    assert rates and all(value == 0.25 for value in rates.values()), rates
    if hasattr(saved, "classifier_dropout") and type(saved)().classifier_dropout is None:  # the family's default
        saved.classifier_dropout = None
        saved.save_pretrained(tmp_path)
        assert load_config(str(tmp_path), GLUE_TASKS["mrpc"], 0.25).classifier_dropout is None


def family_model(family: str, attention: str, lean: bool, lora: bool):
    from transformers import AutoModelForSequenceClassification

    from gluebox.training.lean import make_lean

    torch.manual_seed(0)
    try:
        model = AutoModelForSequenceClassification.from_config(family_config(family), attn_implementation=attention)
    except ValueError:
        pytest.skip(f"{family} has no {attention} attention")
    model.train()
    if lean:
        make_lean(model)
    if lora:
        from gluebox.config import TrainConfig
        from gluebox.training.adapters import add_lora

        model = add_lora(model, TrainConfig(peft="lora", lora_r=4, lora_dropout=0.1))
    return model


def forward(model, masks=None):
    ids = torch.randint(5, 1000, (4, 11), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(4, 11, dtype=torch.long)
    mask[:2, 7:] = 0
    with masks if masks is not None else torch.enable_grad():
        return model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 0, 1])).loss


@pytest.mark.parametrize("lean", [False, True], ids=["plain", "recompute"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("family", FAMILIES + ["bert-lora", "distilbert-lora"])
def test_every_family_draws_gluebox_masks_and_none_of_pytorchs(family, attention, lean, monkeypatch):
    """A training step's forward and backward passes draw nothing from PyTorch's generator; every dropout
    call PyTorch's generator would serve (counted in a plain forward pass) is served by a gluebox mask,
    at the next place, and its output is ``(x * s) * k`` with ``k`` the mask at that place. The backward
    pass and the attention's recomputation draw nothing: they apply the masks kept from the forward."""
    lora = family.endswith("-lora")
    model = family_model(family.removesuffix("-lora"), attention, lean, lora)
    plain = TorchDraws()
    with plain:
        forward(model)
    assert plain.draws >= 3, "the family's config has dropout in the embeddings, the attention and the layers"

    served = []
    original = dropout.dropout

    def recorded(x, p, mask):
        out = original(x, p, mask)
        served.append((x.detach().clone(), p, mask.key, mask.place, out.detach().clone()))
        return out

    monkeypatch.setattr(dropout, "dropout", recorded)
    forward_draws, backward_draws = TorchDraws(), TorchDraws()
    step = DropoutStream(seed=9).step(5, 1)
    with forward_draws:
        loss = forward(model, step)
    philox_draws = PhiloxDraws(monkeypatch)
    with backward_draws:
        loss.backward()
    assert forward_draws.draws == 0 and backward_draws.draws == 0
    assert philox_draws.words == 0, "the backward pass and the recomputation apply the kept masks"
    in_forward = served[: step.call]
    assert [place for *_, place, _ in in_forward] == [Place(5, 1, call) for call in range(plain.draws)]
    for x, p, key, place, out in served:
        assert key == (9, 0)
        assert torch.equal(out, (x * scale(p)) * keep_mask(x.numel(), p, key, place).view(x.shape).to(x.dtype))
    recomputed = {place for *_, place, _ in served[step.call:]}
    assert recomputed <= {place for *_, place, _ in in_forward}  # drawn again at the forward's places
    if model.config._attn_implementation.startswith(RECOMPUTED):
        assert len(recomputed) >= model.config.num_hidden_layers  # each layer's attention, recomputed


def test_a_step_is_the_same_with_and_without_the_masks_of_another_step():
    """The place picks the mask: the same step twice gives the same loss, another step another loss."""
    model = family_model("bert", "sdpa", lean=True, lora=False)
    stream = DropoutStream(seed=1)
    first, again, other = (forward(model, stream.step(s, 0)).item() for s in (0, 0, 1))
    assert first == again and first != other


def test_pytorchs_generator_is_kept_as_a_benchmark_way(monkeypatch):
    """GLUEBOX_DROPOUT_GENERATOR=torch: the step draws PyTorch's masks, as before this version."""
    monkeypatch.setenv(dropout.GENERATOR_VARIABLE, "torch")
    assert DropoutStream(seed=1).step(0, 0) is None
    draws = TorchDraws()
    with draws:
        forward(family_model("bert", "sdpa", lean=False, lora=False))
    assert draws.draws > 0


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "bool-whole-row", "float-whole-row", "causal"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "autocast"])
def test_attention_is_sdpas_math_kernel(mask_kind, dtype):
    """With dropout left out, :func:`attention` (what answers sdpa with a dropout_p) gives sdpa's math
    kernel's output bit for bit: the same operations in the same order, masks and rows that attend to
    nothing included (0 there, not NaN). Under autocast (--precision bf16-mixed) it computes in
    bfloat16 instead of casting up to float32 (issue 24 part 2: those casts were a bf16 step's largest
    cost after the matrix multiplies): the same values to bfloat16's precision, 0 for rows that attend
    to nothing."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 7, 16, generator=generator) for _ in range(3))
    keep = torch.rand(2, 1, 7, 7, generator=generator) > 0.3
    keep[..., 0] = True
    if mask_kind.endswith("whole-row"):
        keep[0, 0, 2, :] = False
    attn_mask = None if mask_kind in ("none", "causal") else keep if mask_kind.startswith("bool") else \
        torch.where(keep, 0.0, float("-inf"))
    causal = mask_kind == "causal"
    if dtype == "bfloat16":
        q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
        attn_mask = attn_mask.bfloat16() if attn_mask is not None and attn_mask.is_floating_point() else attn_mask
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "autocast"):
        with sdpa_kernel(SDPBackend.MATH):
            expected = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal)
        masks = StepMasks((1, 0), 0, 0)
        masks.draw = lambda x, p: x  # the dropout left out
        with masks:
            ours = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal, dropout_p=0.1)
    assert ours.dtype == expected.dtype and not ours.isnan().any()
    if dtype == "autocast":
        torch.testing.assert_close(ours.float(), expected.float(), atol=3e-2, rtol=3e-2)
        if mask_kind.endswith("whole-row"):
            assert torch.equal(ours[0, :, 2], expected[0, :, 2]) and not ours[0, :, 2].any()
    else:
        assert torch.equal(ours, expected)


def test_attention_gradients_are_sdpas_and_the_heads_gradients_need_no_copy():
    """Queries, keys and values split into heads as models split them (strided views of the projections):
    :func:`attention`'s input gradients are sdpa's math kernel's bit for bit, and the queries' and keys'
    gradients come back in the projections' layout, so that merging the heads again is a view, not a copy
    (only the values' gradient, a matrix multiply's output, is copied)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def heads(projection):
        return projection.view(3, 9, 4, 16).transpose(1, 2)

    def gradients(attend):
        generator = torch.Generator().manual_seed(0)
        projections = [torch.randn(3, 9, 64, generator=generator, requires_grad=True) for _ in range(3)]
        out = attend(*(heads(p) for p in projections))
        copies = CopyCount()
        with copies:
            out.backward(torch.randn(out.shape, generator=generator))
        return [p.grad for p in projections], copies.count

    def ours(q, k, v):
        masks = StepMasks((1, 0), 0, 0)
        masks.draw = lambda x, p: x  # the dropout left out
        with masks:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)

    def sdpa(q, k, v):
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v)

    (expected, _), (got, copies) = gradients(sdpa), gradients(ours)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert copies == 1


class CopyCount(TorchDispatchMode):
    """Counts the copies of tensors of 3 or more dimensions (what merging heads costs)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.copy_.default, torch.ops.aten.clone.default) and args[0].dim() >= 3:
            self.count += 1
        return func(*args, **(kwargs or {}))
