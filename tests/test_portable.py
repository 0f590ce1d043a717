"""``--reproducibility portable``: the golden fingerprint, the pins, and ``gluebox compare``'s explanation.

Every run here is ``python -m gluebox`` in its own process, because the portable mode's variables
must be set before torch runs its first kernel (this test process ran many already).

The golden constants must hold on every x86-64 CPU with AVX2, Intel's or AMD's: that is what the
portable mode promises. This machine can only simulate other CPUs by the variables a run inherits
(``ATEN_CPU_CAPABILITY=avx512`` or ``default``, oneDNN's and MKL's at their fastest): the portable
mode must override them all.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from fixtures import write_mrpc
from gluebox import reproducibility
from gluebox.cli import reproducibility_mode
from gluebox.config import TrainConfig
from gluebox.errors import GlueboxError

GOLDEN_PORTABLE = {
    "steps": ["0x1.6689da0000000p-1", "0x1.61b2600000000p-1", "0x1.62e7200000000p-1", "0x1.6ba1e20000000p-1",
              "0x1.61f3fe0000000p-1", "0x1.63b5a00000000p-1"],
    "validation_loss": "0x1.64680f0000000p-1",
    "fingerprint": "38723a2e5e8a17aa7950dc008209944e898f69a7bd10a23c839d341e935fd5ca",
}
"""The golden portable run (:func:`golden_args`): every step's loss and the validation loss as
``float.hex`` (to the last bit), and the validation predictions' fingerprint. Valid for the torch,
transformers and tokenizer versions of ``requirements/lock.txt``, on any x86-64 CPU with AVX2.
Regenerate only for an intended change of the maths (or a new torch), and say why in the commit.
Last regenerated when each dropout mask element took 16 of Philox's random bits instead of 32
(:mod:`gluebox.training.dropout`): the losses changed, the predictions did not; the same before, when
the masks moved from PyTorch's generator to Philox4x64-10."""

CONTROLLED = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "OMP_NUM_THREADS",
              "MKL_NUM_THREADS", reproducibility.VARIABLE)

OUTER = {
    "clean": {},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "MKL_CBWR": "AUTO"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "SSE4_2"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
}
"""Environments a portable run starts from: whatever they say, it runs the same kernels."""


def environment(outer: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    return env | {"PYTHONPATH": str(REPO / "src")} | outer


def gluebox(args: list[str], outer: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gluebox", *args], env=environment(outer or {}),
                          capture_output=True, text=True, timeout=600)


BUILD_MODEL = """
import os, sys
from pathlib import Path
from gluebox.reproducibility import PORTABLE_ENVIRONMENT
os.environ.update(PORTABLE_ENVIRONMENT)
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[2])
from conftest import make_tiny_model
make_tiny_model(Path(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def golden_inputs(tmp_path_factory) -> tuple[str, Path]:
    """The tiny BERT (its random weights drawn by the portable mode's own kernels, so they are the
    same on every CPU) and the fixed MRPC-layout data."""
    folder = tmp_path_factory.mktemp("portable")
    model = folder / "tiny-bert"
    subprocess.run([sys.executable, "-c", BUILD_MODEL, str(model), str(REPO / "tests")], env=environment({}),
                   check=True, capture_output=True, timeout=300)
    return str(model), write_mrpc(folder / "mrpc")


def golden_args(inputs: tuple[str, Path], output: Path, *extra: str) -> list[str]:
    model, data = inputs
    return ["train", "--model_name_or_path", model, "--data_dir", str(data), "--task_name", "mrpc",
            "--output_dir", str(output), "--train_batch_size", "8", "--eval_batch_size", "8", "--epochs", "1",
            "--warmup_steps", "0", "--learning_rate", "1e-3", "--max_seq_length", "64", "--wandb_mode", "disabled",
            "--no-progress_bar", "--checkpoint_every_minutes", "0", *extra]


def observed(run: Path) -> dict:
    with open(run / "steps" / "metrics.csv", newline="") as file:
        steps = [float(row["loss"]).hex() for row in csv.DictReader(file)]
    summary = json.loads((run / "summary.json").read_text())
    return {"steps": steps, "validation_loss": float(summary["final"]["validation/loss"]).hex(),
            "fingerprint": summary["fingerprint"]}


@pytest.fixture(scope="module")
def golden_runs(golden_inputs, tmp_path_factory) -> dict[str, Path]:
    """The golden portable run started from each of the OUTER environments."""
    folder = tmp_path_factory.mktemp("golden-runs")
    runs = {}
    for name, outer in OUTER.items():
        runs[name] = folder / name
        result = gluebox(golden_args(golden_inputs, runs[name], "--reproducibility", "portable"), outer)
        assert result.returncode == 0, result.stderr
    return runs


def test_golden_portable_fingerprint(golden_runs):
    """The same losses to the last bit and the same predictions, whatever the run inherited, as recorded."""
    results = {name: observed(run) for name, run in golden_runs.items()}
    for name, result in results.items():
        assert result == results["clean"], f"a portable run that inherited {OUTER[name]} differs"
        environment_record = json.loads((golden_runs[name] / "environment.json").read_text())
        assert environment_record["torch_cpu_capability"] == "AVX2"
        assert environment_record["variables"]["MKL_CBWR"] == "COMPATIBLE"
        assert environment_record["variables"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
        assert environment_record["torch_threads"] == 1 and environment_record["adamw"] == "for-loop"
        assert environment_record["reproducibility"] == "portable" and environment_record["cpu_vendor"]
    assert results["clean"] == GOLDEN_PORTABLE, json.dumps(results["clean"], indent=4)
    assert len(GOLDEN_PORTABLE["steps"]) == 6


def test_portable_run_records_its_threads_and_compares_identical(golden_runs):
    config = (golden_runs["clean"] / "config.yaml").read_text()
    assert "num_threads: 1\n" in config and "reproducibility: portable\n" in config
    result = gluebox(["compare", str(golden_runs["clean"]), str(golden_runs["avx512"])])
    assert result.returncode == 0 and result.stdout.startswith("identical"), result.stdout + result.stderr


def test_evaluate_and_predict_take_the_runs_mode(golden_runs, golden_inputs, tmp_path):
    """Started from a fast environment, evaluate and predict read the run's mode and pin it (else the
    check that a portable run's kernels are pinned would refuse them)."""
    run = golden_runs["clean"]
    output = tmp_path / "metrics.json"
    result = gluebox(["evaluate", str(run), "--output", str(output)], OUTER["avx512"])
    assert result.returncode == 0, result.stderr
    loss = json.loads(output.read_text())["validation"]["loss"]
    assert float(loss).hex() == observed(run)["validation_loss"]
    predictions = tmp_path / "predictions.tsv"
    result = gluebox(["predict", str(run / "checkpoints" / "last.ckpt"), "--output", str(predictions)], OUTER["avx512"])
    assert result.returncode == 0, result.stderr


def test_compare_explains_other_threads(golden_runs, golden_inputs, tmp_path):
    """Two real portable runs, 1 thread against 2: compare names the thread count when they differ."""
    two = tmp_path / "two-threads"
    result = gluebox(golden_args(golden_inputs, two, "--reproducibility", "portable", "--num_threads", "2"))
    assert result.returncode == 0, result.stderr
    assert "num_threads: 2\n" in (two / "config.yaml").read_text()
    result = gluebox(["compare", str(golden_runs["clean"]), str(two)])
    if result.returncode == 0:  # this tiny model's matrices may be too small to split between threads
        assert result.stdout.startswith("identical")
        return
    assert result.returncode == 1, result.stderr
    explanation = result.stdout.splitlines()[1]
    assert explanation.startswith("not comparable bit for bit: 1 against 2 threads; metrics agree within 1e-4")
    assert "predictions differ on " in explanation and explanation.endswith(" of 16 examples")


@pytest.fixture(scope="module")
def wider_inputs(golden_inputs, shared_glue, tmp_path_factory) -> tuple[str, Path]:
    """A tiny BERT with 128-wide layers on real MRPC (the 32-wide one on the test's own short sentences
    gives the same bits at every instruction set and thread count in the fast mode too)."""
    from transformers import AutoModel, AutoTokenizer, BertConfig

    import torch

    path = tmp_path_factory.mktemp("wider-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=128)
    AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(golden_inputs[0]).save_pretrained(path)
    return str(path), shared_glue / "MRPC"


def wider_args(inputs: tuple[str, Path], output: Path, *extra: str) -> list[str]:
    """benchmarks/reproducibility_probe.py's run: 64 examples, 4 steps of 16, validation on 64."""
    return golden_args(inputs, output, "--max_train_samples", "64", "--train_batch_size", "16",
                       "--max_eval_samples", "64", "--max_seq_length", "128", *extra)


def test_compare_explains_fast_runs_with_other_threads(wider_inputs, tmp_path):
    """Two real fast runs, 2 threads against 1: they differ in the last bits (fused AdamW splits its work
    by thread), and compare says they could not be identical, and by how little they differ."""
    runs = {}
    for threads in ("2", "1"):
        runs[threads] = tmp_path / f"threads-{threads}"
        result = gluebox(wider_args(wider_inputs, runs[threads], "--num_threads", threads))
        assert result.returncode == 0, result.stderr
    result = gluebox(["compare", str(runs["2"]), str(runs["1"])])
    assert result.returncode == 1, result.stdout + result.stderr
    explanation = result.stdout.splitlines()[1]
    print(explanation)
    assert explanation.startswith("not comparable bit for bit: 2 against 1 threads; metrics agree within 1e-4 ")
    assert explanation.endswith("; predictions differ on 0 of 64 examples")


def test_compare_explains_another_instruction_set(wider_inputs, tmp_path):
    """Two real fast runs whose kernels ran at different instruction sets (the most this CPU has
    against ATen's plain C++ kernels): not comparable bit for bit, and compare says why."""
    runs = {}
    for name in ("avx512", "default"):
        runs[name] = tmp_path / name
        result = gluebox(wider_args(wider_inputs, runs[name], "--num_threads", "1"),
                         {"ATEN_CPU_CAPABILITY": name})
        assert result.returncode == 0, result.stderr
    capabilities = [json.loads((run / "environment.json").read_text())["torch_cpu_capability"] for run in runs.values()]
    assert capabilities[1] == "DEFAULT"
    result = gluebox(["compare", str(runs["avx512"]), str(runs["default"])])
    assert result.returncode == 1, result.stdout + result.stderr
    names = {"AVX512": "AVX-512", "AVX2": "AVX2"}
    explanation = result.stdout.splitlines()[1]
    print(explanation)
    assert explanation.startswith(f"not comparable bit for bit: {names[capabilities[0]]} against no vector extensions;")
    assert "metrics agree within 1e-4" in explanation and "predictions differ on " in explanation


def test_compare_counts_differing_predictions(golden_runs, tmp_path):
    """A run edited to another CPU, with a metric moved and two predictions flipped."""
    original = golden_runs["clean"]
    edited = tmp_path / "edited"
    shutil.copytree(original, edited)
    environment_record = json.loads((edited / "environment.json").read_text())
    environment_record |= {"torch_cpu_capability": "AVX512", "reproducibility": "fast", "torch_threads": 2}
    (edited / "environment.json").write_text(json.dumps(environment_record))
    (edited / "config.yaml").write_text((edited / "config.yaml").read_text()
                                        .replace("reproducibility: portable", "reproducibility: fast"))
    records = [json.loads(line) for line in (edited / "metrics.jsonl").read_text().splitlines()]
    records[-1]["validation/loss"] += 3e-5
    (edited / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with np.load(edited / "validation_predictions.npz") as data:
        predictions = data["validation"].copy()
    predictions[:2] = 1 - predictions[:2]
    np.savez_compressed(edited / "validation_predictions.npz", validation=predictions)

    result = gluebox(["compare", str(original), str(edited)])
    assert result.returncode == 1
    assert result.stdout.splitlines()[1] == (
        "not comparable bit for bit: portable against fast mode, AVX2 against AVX-512, 1 against 2 threads; "
        "metrics agree within 1e-4 (largest difference 3e-5: epoch 1 validation/loss); "
        "predictions differ on 2 of 16 examples")
    result = gluebox(["compare", str(original), str(edited), "--tolerance", "1e-5"])
    assert result.returncode == 1 and "metrics differ by more than 1e-5 (epoch 1 validation/loss: 3e-05)" in result.stdout


def test_mode_is_read_before_torch(tmp_path, monkeypatch):
    """The command line, a --config file, the environment, or the run's own config.yaml say the mode."""
    monkeypatch.delenv(reproducibility.VARIABLE, raising=False)
    assert reproducibility_mode(["train", "--reproducibility", "portable"]) == "portable"
    assert reproducibility_mode(["--debug", "train", "--reproducibility=portable"]) == "portable"
    assert reproducibility_mode(["train", "--task_name", "rte"]) == "fast"
    config = tmp_path / "flags.yaml"
    config.write_text("reproducibility: portable\n")
    assert reproducibility_mode(["train", "--config", str(config)]) == "portable"
    assert reproducibility_mode(["train", "--config", str(config), "--reproducibility", "fast"]) == "fast"
    monkeypatch.setenv(reproducibility.VARIABLE, "portable")
    assert reproducibility_mode(["train"]) == "portable"
    monkeypatch.delenv(reproducibility.VARIABLE)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("task_name: mrpc\nreproducibility: portable\n")
    assert reproducibility_mode(["train", "--resume", str(run)]) == "portable"
    assert reproducibility_mode(["train", "--resume", str(run), "--reproducibility", "fast"]) == "portable"
    assert reproducibility_mode(["evaluate", "--split", "validation", str(run)]) == "portable"
    assert reproducibility_mode(["predict", str(run / "checkpoints" / "last.ckpt"), "--output", "x.tsv"]) == "portable"
    assert reproducibility_mode(["evaluate", str(tmp_path / "missing")]) == "fast"
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "suite.json").write_text(json.dumps({"configs": {"rte": {"reproducibility": "portable"}}}))
    assert reproducibility_mode(["glue", "--resume", str(suite)]) == "portable"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("base:\n  reproducibility: portable\n")
    assert reproducibility_mode(["sweep", str(sweep)]) == "portable"
    assert reproducibility_mode(["compare", "a", "b"]) == "fast"


def test_portable_config_fixes_the_threads():
    assert TrainConfig(reproducibility="portable").num_threads == 1
    assert TrainConfig(reproducibility="portable", num_threads=2).num_threads == 2
    assert TrainConfig().num_threads is None
    with pytest.raises(GlueboxError, match="--reproducibility must be one of fast, portable"):
        TrainConfig(reproducibility="exact").validate()


def test_portable_refuses_kernels_that_were_not_pinned(monkeypatch):
    """In this process torch already runs its kernels at this CPU's best: a portable run here is refused."""
    import torch

    for name in reproducibility.PORTABLE_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(GlueboxError, match="needs ATEN_CPU_CAPABILITY=avx2 .* set before torch runs"):
        reproducibility.check_pinned("portable")
    reproducibility.check_pinned("fast")
    for name, value in reproducibility.PORTABLE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    if torch.backends.cpu.get_cpu_capability() != "AVX2":
        with pytest.raises(GlueboxError, match="needs torch's kernels at AVX2"):
            reproducibility.check_pinned("portable")


def test_bad_mode_is_one_line(tmp_path):
    result = gluebox(["train", "--reproducibility", "exact", "--output_dir", str(tmp_path / "x")])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "exact" in result.stderr


def test_dropout_masks_come_from_the_generic_generator_at_any_thread_count():
    """PyTorch's dropout masks, which a training step draws under ``GLUEBOX_DROPOUT_GENERATOR=torch`` (the
    benchmark way; by default the masks come from Philox, tests/test_dropout_masks.py). They must be the
    same on every CPU for such runs to be comparable too. With torch 2.13 they are: ``bernoulli_`` (what dropout draws its mask with) takes
    each element's uniform double from the CPU generator (mt19937) one after the other, exactly the numbers
    ``torch.rand(dtype=float64)`` draws, on this Intel CPU too. Earlier torch releases drew them with MKL's
    own generator (``viRngBernoulli``) on Intel CPUs only and with the generic one elsewhere (the vendor
    check discussed in pytorch/pytorch#38558; that MKL path was later disabled, see #151218): other masks
    on other vendors. If a torch upgrade brings such a path back, this fails on an Intel machine."""
    import torch

    threads = torch.get_num_threads()
    try:
        masks = {}
        for count in (1, 2):
            torch.set_num_threads(count)
            torch.manual_seed(7)
            kept = torch.nn.functional.dropout(torch.ones(70_000), p=0.1, training=True) != 0
            torch.manual_seed(7)
            uniform = torch.rand(70_000, dtype=torch.float64)
            assert torch.equal(kept, uniform < 0.9)
            masks[count] = kept
        assert torch.equal(masks[1], masks[2])
    finally:
        torch.set_num_threads(threads)
