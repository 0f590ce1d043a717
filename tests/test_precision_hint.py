"""The bfloat16 hint and the precision's matrix-multiply speed in the time estimate, from faked probe
results (never this machine's speed, never requiring AMX)."""

from __future__ import annotations

import pytest

from conftest import train_args
from fixtures import write_mrpc
from gluebox.cli import main
from gluebox.training import eta
from gluebox.training.eta import MatmulSpeeds, precision_hint, training_seconds

AMX = MatmulSpeeds(float32=271.0, bfloat16=2660.0)
"""An Intel Xeon with AMX (issue 24's measurement): bfloat16 9.8x float32."""
AVX2 = MatmulSpeeds(float32=200.0, bfloat16=60.0)
"""An AVX2 CPU without bfloat16 units: bfloat16 converted and multiplied in float32, slower."""
AVX512_BF16 = MatmulSpeeds(float32=200.0, bfloat16=300.0)
"""bfloat16 faster, but not twice: no hint either way."""


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("mrpc"))


def test_a_cpu_that_multiplies_bfloat16_twice_as_fast_suggests_bf16_mixed():
    hint = precision_hint(AMX, "32")
    assert hint is not None and hint.startswith("hint: ")
    assert "9.8x" in hint and "--precision bf16-mixed" in hint and "2660 against 271 GFLOP/s" in hint
    assert precision_hint(MatmulSpeeds(100.0, 200.0), "32") is not None  # exactly twice
    assert precision_hint(MatmulSpeeds(100.0, 199.0), "32") is None
    assert precision_hint(AMX, "bf16-mixed") is None  # already chosen
    assert precision_hint(AMX, "32", device="cuda") is None  # the probe measures the CPU
    assert precision_hint(AMX, "32", portable=True) is None  # float32's numbers everywhere is the point there


def test_bf16_mixed_on_a_cpu_without_bfloat16_units_says_it_is_slower_and_nothing_else():
    note = precision_hint(AVX2, "bf16-mixed")
    assert note is not None and "slower here" in note and "0.30x" in note and "going on" in note
    assert precision_hint(AVX2, "32") is None
    assert precision_hint(AVX512_BF16, "32") is None and precision_hint(AVX512_BF16, "bf16-mixed") is None
    assert precision_hint(AVX2, "16-mixed") is None


def test_the_estimate_uses_the_chosen_precisions_matrix_multiply_speed():
    args = dict(non_embedding=43_000_000, parameters=67_000_000, layers=6, steps=115, train_tokens=195_290)
    for speeds in (AMX, AVX2):
        fp32 = training_seconds(gflops=speeds.for_precision("32"), precision="32", **args)
        bf16 = training_seconds(gflops=speeds.for_precision("bf16-mixed"), precision="bf16-mixed", **args)
        assert (bf16 < fp32) == (speeds is AMX)
    assert AMX.for_precision("bf16-mixed") == 2660.0 and AMX.for_precision("16-mixed") == 271.0


def _run_lines(monkeypatch, speeds, model, data, output, *flags) -> list[str]:
    import contextlib
    import io

    monkeypatch.setattr(eta, "matmul_speeds", lambda: speeds)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(train_args(model, output, "--data_dir", str(data), "--epochs", "1", "--train_batch_size", "16",
                               *flags)) == 0
    return printed.getvalue().splitlines()


def test_train_prints_the_hint_after_its_time_estimate(tiny_bert, mrpc_dir, tmp_path, monkeypatch):
    lines = _run_lines(monkeypatch, AMX, tiny_bert, mrpc_dir, tmp_path / "amx")
    estimate = next(i for i, line in enumerate(lines) if line.startswith("time estimate: "))
    assert "float32 matrix multiplies at 271 GFLOP/s" in lines[estimate]
    assert lines[estimate + 1] == precision_hint(AMX, "32")
    lines = _run_lines(monkeypatch, AVX512_BF16, tiny_bert, mrpc_dir, tmp_path / "no-hint")
    assert not any(line.startswith(("hint: ", "note: ")) for line in lines)


def test_bf16_mixed_where_it_is_slower_says_so_in_one_line_and_trains(tiny_bert, mrpc_dir, tmp_path, monkeypatch):
    import json

    run = tmp_path / "avx2"
    lines = _run_lines(monkeypatch, AVX2, tiny_bert, mrpc_dir, run, "--precision", "bf16-mixed")
    estimate = next(i for i, line in enumerate(lines) if line.startswith("time estimate: "))
    assert "bfloat16 matrix multiplies at 60 GFLOP/s" in lines[estimate]
    assert lines[estimate + 1] == precision_hint(AVX2, "bf16-mixed")
    assert sum("slower here" in line for line in lines) == 1
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"


def test_the_glue_plan_says_it_too(mrpc_dir, tiny_bert, tmp_path, monkeypatch):
    import gluebox.suite.plan as suite_plan
    from gluebox.config import TrainConfig
    from gluebox.suite.spec import Suite

    monkeypatch.setattr(suite_plan, "matmul_speeds", lambda: AMX)
    config = TrainConfig(model_name_or_path=tiny_bert, data_dir=str(mrpc_dir), epochs=1).to_dict()
    plan = suite_plan.make_plan(Suite(tmp_path / "suite", ["mrpc"], {"mrpc": config}), {})
    described = plan.describe().splitlines()
    total = next(i for i, line in enumerate(described) if line.startswith("  total: "))
    assert "float32 matrix multiply at 271 GFLOP/s" in described[total]
    assert described[total + 1] == "  " + precision_hint(AMX, "32")
    bf16 = suite_plan.make_plan(Suite(tmp_path / "suite-bf16", ["mrpc"], {"mrpc": config | {"precision": "bf16-mixed"}}),
                                {})
    assert "bfloat16 matrix multiply at 2660 GFLOP/s" in bf16.describe() and "hint: " not in bf16.describe()
    assert bf16.tasks[0].seconds < plan.tasks[0].seconds
