"""--recompute (the default): attention and activation outputs recomputed in the backward pass.

It must save memory and change nothing else: the same losses, gradients and weights bit for
bit, with dropout on and padded batches, on BERT- and DistilBERT-style models, and a whole
`gluebox train` run identical under `gluebox compare`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import train_args
from fixtures import write_mrpc
from gluebox.cli import main
from gluebox.training.dropout import GENERATOR_VARIABLE, DropoutStream
from gluebox.training.lean import make_lean


def tiny(kind: str, attention: str, lean: bool):
    from transformers import AutoModelForSequenceClassification, BertConfig, DistilBertConfig

    torch.manual_seed(0)
    if kind == "distilbert":
        config = DistilBertConfig(num_labels=2, n_layers=2, dim=64, n_heads=4, hidden_dim=128)
    elif kind == "distilbert-wide":  # DistilBERT's widths: head size 64, whose scale rounds (16's does not)
        config = DistilBertConfig(num_labels=2, n_layers=1)
    else:
        config = BertConfig(num_labels=2, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=128)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attention)
    model.train()
    if lean:
        make_lean(model)
    return model


def train_steps(model, steps: int = 4, autocast: bool = False):
    """Losses and final weights of a few AdamW steps on padded random batches (dropout on), each forward
    pass under the step's dropout masks (gluebox's, or none under GLUEBOX_DROPOUT_GENERATOR=torch)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    stream = DropoutStream(seed=1)
    losses = []
    for step in range(steps):
        ids = torch.randint(1000, 3000, (8, 20), generator=generator)
        mask = torch.ones(8, 20, dtype=torch.long)
        mask[:4, 13:] = 0
        labels = torch.randint(0, 2, (8,), generator=generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), stream.step(step, 0) or nullcontext():
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("kind", ["bert", "distilbert", "distilbert-wide"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("generator", ["philox", "torch"])
def test_recompute_changes_no_bit(kind, attention, autocast, generator, monkeypatch):
    monkeypatch.setenv(GENERATOR_VARIABLE, generator)
    plain_losses, plain_weights = train_steps(tiny(kind, attention, lean=False), autocast=autocast)
    lean_losses, lean_weights = train_steps(tiny(kind, attention, lean=True), autocast=autocast)
    assert lean_losses == plain_losses
    assert all(torch.equal(a, b) for a, b in zip(lean_weights, plain_weights))


def test_recompute_is_really_on():
    """The lean model runs its own attention function and keeps notes instead of GELU outputs."""
    from gluebox.training import lean

    model = tiny("distilbert", "sdpa", lean=True)
    assert model.config._attn_implementation == f"{lean.RECOMPUTED}_sdpa"
    recomputed = []
    original = lean.ActivationNotes.unpack
    lean.ActivationNotes.unpack = staticmethod(lambda packed: recomputed.append(type(packed)) or original(packed))
    try:
        model(input_ids=torch.randint(1000, 3000, (2, 9)), labels=torch.tensor([0, 1])).loss.backward()
    finally:
        lean.ActivationNotes.unpack = staticmethod(original)
    assert recomputed.count(tuple) == 2  # one GELU output per layer, recomputed in the backward pass


class CountDraws(TorchDispatchMode):
    """Counts dropout's draws (``bernoulli_``) while entered."""

    def __init__(self):
        super().__init__()
        self.draws = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.draws += func is torch.ops.aten.bernoulli_.float
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_recompute_applies_the_forwards_masks_again(attention, autocast, monkeypatch):
    """With gluebox's masks the backward pass recomputes each layer's attention with the masks of the
    forward's places, the very masks the forward drew and kept (1 bit an element), and nothing else runs
    dropout: in float32 and under bfloat16 autocast (--precision bf16-mixed) alike."""
    from gluebox.training import dropout

    places, drawn, original = {}, [], dropout.dropout
    kept = {}

    def recorded(x, p, mask):
        if mask.place in kept:
            assert kept[mask.place] is mask and mask.kept is not None, "the forward's mask, kept"
        kept[mask.place] = mask
        drawn.append(mask.place)
        return original(x, p, mask)

    monkeypatch.setattr(dropout, "dropout", recorded)
    for lean in (False, True):
        model = tiny("bert", attention, lean=lean)
        drawn.clear()
        kept.clear()
        step = DropoutStream(seed=3).step(0, 0)
        with step, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=torch.randint(1000, 3000, (2, 9)), labels=torch.tensor([0, 1])).loss
        forward = list(drawn)
        loss.backward()
        places[lean] = (forward, drawn[len(forward):])
    assert places[True][0] == places[False][0] and places[False][1] == []
    assert places[True][1] and set(places[True][1]) < set(places[True][0])
    assert len(places[True][1]) == 2  # the attention dropout of each of the 2 layers


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_recompute_draws_no_dropout_mask_again_with_pytorchs_generator(attention, monkeypatch):
    """Under GLUEBOX_DROPOUT_GENERATOR=torch the backward pass recomputes the attention with the masks its
    forward pass drew and kept: no draw in the backward pass (drawing a CPU mask is serial, about 6 ns an
    element), and the forward draws as many as the plain model's."""
    monkeypatch.setenv(GENERATOR_VARIABLE, "torch")
    draws = {}
    for lean in (False, True):
        model = tiny("bert", attention, lean=lean)
        forward, backward = CountDraws(), CountDraws()
        torch.manual_seed(3)
        with forward:
            loss = model(input_ids=torch.randint(1000, 3000, (2, 9)), labels=torch.tensor([0, 1])).loss
        with backward:
            loss.backward()
        draws[lean] = (forward.draws, backward.draws)
    assert draws[True] == draws[False] == (draws[False][0], 0) and draws[False][0] >= 2 * 2  # 2 layers x 2 dropouts


PEAK = """
import resource, sys, torch
from transformers import AutoModelForSequenceClassification, DistilBertConfig
from gluebox.training.lean import make_lean
torch.manual_seed(0)
model = AutoModelForSequenceClassification.from_config(
    DistilBertConfig(num_labels=2, n_layers=8, dim=256, n_heads=4, hidden_dim=1024))
model.train()
if sys.argv[1] == "lean":
    make_lean(model)
ids = torch.randint(1000, 3000, (32, 128))
for _ in range(2):
    model(input_ids=ids, labels=torch.zeros(32, dtype=torch.long)).loss.backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_recompute_lowers_the_peak():
    """Peak RSS of forward and backward at batch 32 x 128 tokens: the attention's square tensors
    (8 layers x 25 MB) and GELU outputs (8 x 16 MB) are not kept, so the peak drops by far more
    than allocator noise (measured: 142 and 213 MiB less; 4 layers gave only 52 MiB)."""
    peaks = {way: int(subprocess.run([sys.executable, "-c", PEAK, way], capture_output=True, text=True,
                                     check=True).stdout) for way in ("plain", "lean")}
    assert peaks["plain"] - peaks["lean"] > 60 * 1024, peaks  # KiB


def test_a_run_with_recompute_is_identical_to_one_without(tiny_distilbert, tmp_path, capsys):
    data = write_mrpc(tmp_path / "mrpc")
    runs = {}
    for way in ("--recompute", "--no-recompute"):
        runs[way] = tmp_path / way.strip("-")
        assert main(train_args(tiny_distilbert, runs[way], "--data_dir", str(data), "--train_batch_size", "8",
                               "--epochs", "2", "--max_seq_length", "64", "--learning_rate", "1e-3", way)) == 0
    capsys.readouterr()
    assert main(["compare", str(runs["--recompute"]), str(runs["--no-recompute"])]) == 0, capsys.readouterr().out
    plans = [json.loads((run / "memory_plan.json").read_text()) for run in runs.values()]
    assert plans[0]["recompute"] is True and plans[1]["recompute"] is False
    assert plans[0]["estimated_peak_bytes"] < plans[1]["estimated_peak_bytes"]


def test_planner_fits_more_tokens_per_micro_batch_with_recompute():
    from transformers import DistilBertConfig

    from gluebox.training.memory import plan

    config = DistilBertConfig()
    kept = plan(32, None, 2_000_000_000, 66_000_000, config, 128, recompute=False)
    recomputed = plan(32, None, 2_000_000_000, 66_000_000, config, 128, recompute=True)
    assert recomputed.micro_batch_tokens > kept.micro_batch_tokens


def test_mixed_precision_trains_on_the_cpu_and_recompute_keeps_it_identical(tiny_bert, tmp_path, capsys):
    """--precision bf16-mixed: its losses differ from float32's in the last digits, and --recompute
    changes nothing in it either."""
    data = write_mrpc(tmp_path / "mrpc")
    runs = {}
    for name, flags in {"fp32": (), "bf16": ("--precision", "bf16-mixed"),
                        "bf16-kept": ("--precision", "bf16-mixed", "--no-recompute")}.items():
        runs[name] = tmp_path / name
        assert main(train_args(tiny_bert, runs[name], "--data_dir", str(data), "--train_batch_size", "8",
                               "--epochs", "1", "--max_seq_length", "64", *flags)) == 0
    capsys.readouterr()
    assert main(["compare", str(runs["bf16"]), str(runs["bf16-kept"])]) == 0, capsys.readouterr().out
    assert main(["compare", str(runs["bf16"]), str(runs["fp32"])]) == 1
    assert "precision: bf16-mixed" in (runs["bf16"] / "config.yaml").read_text()
