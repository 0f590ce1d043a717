"""The trainer's controls: the learning-rate schedule and its warmup, a step limit, validation within
an epoch, early stopping and a time budget, each through a real `gluebox train` on a tiny model.

The tiny setup: 48 MRPC-like examples in batches of 4 (12 steps an epoch), 16 to validate."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import train_args
from fixtures import write_mrpc
from gluebox.cli import main

STEPS_PER_EPOCH = 12
SETTINGS = ("--train_batch_size", "4", "--eval_batch_size", "8", "--max_seq_length", "64", "--learning_rate", "1e-3")


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("mrpc"))


def args(tiny_bert, mrpc_dir, output: Path, *extra: str) -> list[str]:
    return train_args(tiny_bert, output, "--data_dir", str(mrpc_dir), "--task_name", "mrpc", *SETTINGS, *extra)


def train(tiny_bert, mrpc_dir, output: Path, *extra: str) -> Path:
    assert main(args(tiny_bert, mrpc_dir, output, *extra)) == 0
    return output


def step_rows(run: Path) -> list[dict]:
    with open(run / "steps" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def learning_rates(run: Path) -> list[float]:
    return [float(row["learning_rate"]) for row in step_rows(run)]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def expected_rates(name: str, warmup: int, total: int, peak: float = 1e-3) -> list[float]:
    """The learning rate of each of ``total`` steps under transformers' own schedule ``name``."""
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(("flags", "name", "warmup"), [
    ((), "linear", 50),
    (("--lr_scheduler", "cosine", "--warmup_ratio", "0.25"), "cosine", 6),
    (("--lr_scheduler", "constant_with_warmup", "--warmup_steps", "3"), "constant_with_warmup", 3),
    (("--lr_scheduler", "constant",), "constant", 0),
])
def test_learning_rate_schedules(tiny_bert, mrpc_dir, tmp_path, flags, name, warmup):
    """Each step's learning rate is transformers' schedule's over the run's 24 steps (a quarter of them
    warmup with --warmup_ratio 0.25); the default is today's linear schedule with 50 warmup steps."""
    run = train(tiny_bert, mrpc_dir, tmp_path / "run", "--epochs", "2", *flags)
    assert learning_rates(run) == pytest.approx(expected_rates(name, warmup, 2 * STEPS_PER_EPOCH), rel=1e-12, abs=0)
    card = (run / "best_model" / "README.md").read_text()
    assert f"| `lr_scheduler` | {name} |" in card


def test_max_steps_overrides_epochs_and_the_schedule_follows(tiny_bert, mrpc_dir, tmp_path):
    """--max_steps 16 with --epochs 1: 16 steps (the second epoch stops part way), the linear schedule
    reaches zero at step 16, validation at the first epoch's end and after the last step; complete."""
    run = train(tiny_bert, mrpc_dir, tmp_path / "run", "--epochs", "1", "--max_steps", "16", "--warmup_steps", "4")
    assert [int(row["step"]) for row in step_rows(run)] == list(range(1, 17))
    assert learning_rates(run) == pytest.approx(expected_rates("linear", 4, 16), rel=1e-12, abs=0)
    assert [(r["epoch"], r["step"], r["epochs_trained"]) for r in records(run)] == [(1, 12, 1.0), (2, 16, 1.333333)]
    assert status(run)["status"] == "complete"
    result = summary(run)
    assert (result["steps"], result["planned_steps"], result["epochs"], result["validations"]) == (16, 16, 1.333333, 2)
    assert result["stopped_early"] is False


def test_validation_every_n_steps_picks_the_best_of_all(tiny_bert, mrpc_dir, tmp_path, capsys):
    """--eval_every_n_steps 5 over 24 steps: validations after steps 5, 10, 15, 20 and the last one; the best
    model (best.ckpt, best_model/, summary.json) is the validation with the lowest loss (--metric_for_best
    validation/loss); `gluebox plot` and `gluebox compare` count the validations."""
    run = train(tiny_bert, mrpc_dir, tmp_path / "run", "--epochs", "2", "--eval_every_n_steps", "5",
                "--metric_for_best", "validation/loss")
    found = records(run)
    assert [(r["epoch"], r["step"]) for r in found] == [(1, 5), (1, 10), (2, 15), (2, 20), (2, 24)]
    with open(run / "metrics.csv", newline="") as file:
        assert [int(row["step"]) for row in csv.DictReader(file)] == [5, 10, 15, 20, 24]
    best = min(found, key=lambda r: r["validation/loss"])
    result = summary(run)
    assert (result["best_step"], result["best_epoch"], result["main_metric"]) == (best["step"], best["epoch"], "validation/loss")
    assert result["best"]["validation/loss"] == best["validation/loss"] and result["validations"] == 5
    assert torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["global_step"] == best["step"]
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0  # best_model/ scores as the best validation did
    assert f"{best['validation/loss']:.4f}" in capsys.readouterr().out
    assert main(["plot", str(run), "--output", str(tmp_path / "curves.png")]) == 0
    table = (tmp_path / "curves.md").read_text()
    assert f"| run | 2 |" in table and f"| {best['epoch']} |" in table
    assert main(["compare", str(run), str(run)]) == 0
    assert "identical: 5 validation(s) over 2 epoch(s)" in capsys.readouterr().out


def test_early_stopping(tiny_bert, mrpc_dir, tmp_path):
    """With a min delta no change reaches, only the first validation improves: patience 2 ends the run at the
    third validation (step 9 of 36), complete, and summary.json says why."""
    run = train(tiny_bert, mrpc_dir, tmp_path / "run", "--epochs", "3", "--eval_every_n_steps", "3",
                "--metric_for_best", "loss", "--early_stopping_patience", "2", "--early_stopping_min_delta", "100")
    assert [r["step"] for r in records(run)] == [3, 6, 9]
    assert len(step_rows(run)) == 9
    assert status(run)["status"] == "complete"
    result = summary(run)
    assert result["stopped_early"] is True and result["steps"] == 9 and result["planned_steps"] == 36
    assert result["stop_reason"].startswith("early stopping: validation/loss did not improve by more than 100 in 2 "
                                            "validation(s) in a row")
    best = min(records(run), key=lambda r: r["validation/loss"])
    assert result["best_step"] == best["step"]


CONTROLS = {"max_steps": 20, "eval_every_n_steps": 5, "lr_scheduler": "cosine", "warmup_ratio": 0.1,
            "metric_for_best": "validation/loss", "early_stopping_patience": 3, "early_stopping_min_delta": 0.001}
"""Every new flag but --time_budget at once: given in a YAML config to the reference, as flags to the killed run."""


def without_timings(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in csv.DictReader(file)]


def assert_identical(run: Path, reference: Path, capsys) -> None:
    """`gluebox compare` says identical, and the per-step and per-validation files agree but for timings."""
    capsys.readouterr()
    assert main(["compare", str(run), str(reference)]) == 0, capsys.readouterr().out
    assert "identical:" in capsys.readouterr().out
    assert without_timings(run / "steps" / "metrics.csv") == without_timings(reference / "steps" / "metrics.csv")
    assert without_timings(run / "metrics.csv") == without_timings(reference / "metrics.csv")
    assert status(run)["status"] == "complete" and status(run)["resumes"] >= 1
    assert {k: v for k, v in summary(run).items() if "seconds" not in k and k != "peak_rss_mb"} == \
        {k: v for k, v in summary(reference).items() if "seconds" not in k and k != "peak_rss_mb"}


def test_killed_between_two_validations_resumes_identically(tiny_bert, mrpc_dir, tmp_path, capsys):
    """Checkpoints every 4 steps, validations every 5: killed (SIGKILL) while held after step 7, the run
    has the validation of step 5 on disk, after its last checkpoint (step 4); resumed, it cuts that
    record back, validates again at step 5 and ends as the uninterrupted run (set by a YAML config) did."""
    import signal

    import yaml

    from conftest import start_gluebox, wait_until_paused

    config = tmp_path / "controls.yaml"
    config.write_text(yaml.safe_dump(CONTROLS))
    reference = train(tiny_bert, mrpc_dir, tmp_path / "reference", "--config", str(config))
    assert summary(reference)["planned_steps"] == 20

    run, pauses = tmp_path / "run", tmp_path / "pauses"
    flags = [item for name, value in CONTROLS.items() for item in (f"--{name}", str(value))]
    process = start_gluebox(args(tiny_bert, mrpc_dir, run, *flags, "--checkpoint_every_n_steps", "4"), (7,), pauses)
    wait_until_paused(process, pauses, 7)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert [r["step"] for r in records(run)] == [5]
    assert main(["train", "--resume", str(run)]) == 0
    assert_identical(run, reference, capsys)


# --time_budget: the plan's logic with numbers given, then real runs on a fake clock (GLUEBOX_FAKE_CLOCK:
# each training token and each validation costs fixed seconds), never the machine's speed.

def test_durations():
    from gluebox.config import parse_duration

    assert [parse_duration(text) for text in ("30m", "90s", "2h", "1.5h", "45", " 10 min ", 120)] == \
        [1800.0, 90.0, 7200.0, 5400.0, 45.0, 600.0, 120.0]


def test_validations_due():
    from gluebox.training.budget import validations_due

    assert validations_due(0, 36, 12, None) == 3  # epoch ends 12, 24, 36
    assert validations_due(0, 30, 12, None) == 3  # 12, 24 and the last step
    assert validations_due(12, 30, 12, None) == 2
    assert validations_due(10, 10, 12, None) == 1  # finishing now: a validation at step 10
    assert validations_due(12, 12, 12, None) == 0  # step 12 was validated
    assert validations_due(6, 23, 12, 5) == 4  # 10, 15, 20 and the last step


def test_plan_steps():
    """The most steps whose remaining work ends within 98% of the budget."""
    from gluebox.training.budget import plan_steps

    # 100 s budget, 10 spent, 1 s a step, 5 s a validation at epoch ends (10 steps), 3 s to save at the end:
    # 98 - 10 - 3 = 85 s: 70 more steps (7 validations) cost 105; 60 steps and 6 validations cost 90; 56 steps:
    # 56 + 6 * 5 = 86 > 85; 55: 55 + 30 = 85.
    def second_a_step(done):
        return lambda total: (total - done) * 1.0

    assert plan_steps(100, 10, 0, second_a_step(0), 5.0, 3.0, 10, None, 1000) == 55
    assert plan_steps(100, 10, 0, second_a_step(0), 5.0, 3.0, 10, None, 40) == 40  # at most --epochs' (or --max_steps')
    # From step 20, validating every 4 steps: to 56, 36 steps and 9 validations (24, 28, ..., 56) cost 81; to 57,
    # 37 steps and 10 validations (the last at 57) cost 87.
    assert plan_steps(100, 10, 20, second_a_step(20), 5.0, 3.0, 10, 4, 1000) == 56
    assert plan_steps(100, 97, 20, second_a_step(20), 5.0, 3.0, 10, None, 1000) == 20  # nothing fits: end now


@pytest.fixture(scope="module")
def fake_clock():
    """Every training token costs 0.01 s, every validation 2 s; nothing else takes time."""
    import os

    from gluebox.training.budget import FAKE_CLOCK_VARIABLE

    previous = os.environ.get(FAKE_CLOCK_VARIABLE)
    os.environ[FAKE_CLOCK_VARIABLE] = "token:0.01,validation:2"
    yield
    if previous is None:
        del os.environ[FAKE_CLOCK_VARIABLE]
    else:
        os.environ[FAKE_CLOCK_VARIABLE] = previous


BUDGETED = ("--epochs", "3", "--time_budget", "1m", "--warmup_steps", "0")


@pytest.fixture(scope="module")
def budgeted(tiny_bert, mrpc_dir, tmp_path_factory, fake_clock):
    """An uninterrupted run with a minute of (fake) time for what 3 epochs would take longer."""
    return train(tiny_bert, mrpc_dir, tmp_path_factory.mktemp("budget") / "run", *BUDGETED)


def test_time_budget_plans_the_steps_that_fit(budgeted):
    result = summary(budgeted)
    budget = result["time_budget"]
    assert status(budgeted)["status"] == "complete"
    assert budget["budget_seconds"] == 60 and budget["within_budget"]
    assert 0.95 <= budget["share_used"] <= 1.0, budget
    assert budget["planned_steps"] == budget["steps"] == result["steps"] < 3 * STEPS_PER_EPOCH
    assert records(budgeted)[-1]["step"] == result["steps"]  # it ended with a validation
    rates = learning_rates(budgeted)
    assert rates[-1] == pytest.approx(1e-3 / result["steps"], rel=1e-9)  # the linear decay ends at the last step
    assert budget["note"].startswith("ended ") and "inside the budget of 60 s" in budget["note"]


def test_time_budgeted_run_resumes_identically_and_keeps_its_budget(tiny_bert, mrpc_dir, tmp_path, budgeted, capsys,
                                                                     fake_clock):
    """Killed after its plan (step 9; checkpoint at 8) and resumed: identical to the uninterrupted run, and the
    seconds spent before the checkpoint still count. Resumed on a clock three times slower, it plans fewer
    steps and still ends within what is left of the budget."""
    import os
    import shutil
    import signal

    from conftest import start_gluebox, wait_until_paused
    from gluebox.training.budget import FAKE_CLOCK_VARIABLE

    run, pauses = tmp_path / "run", tmp_path / "pauses"
    process = start_gluebox(args(tiny_bert, mrpc_dir, run, *BUDGETED, "--checkpoint_every_n_steps", "4"), (9,), pauses)
    wait_until_paused(process, pauses, 9)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    shutil.copytree(run, tmp_path / "slower")
    assert main(["train", "--resume", str(run)]) == 0
    assert_identical(run, budgeted, capsys)
    assert summary(run)["time_budget"]["spent_seconds"] == pytest.approx(summary(budgeted)["time_budget"]["spent_seconds"])

    os.environ[FAKE_CLOCK_VARIABLE] = "token:0.03,validation:2"
    try:
        assert main(["train", "--resume", str(tmp_path / "slower")]) == 0
    finally:
        os.environ[FAKE_CLOCK_VARIABLE] = "token:0.01,validation:2"
    slower = summary(tmp_path / "slower")["time_budget"]
    assert slower["within_budget"] and slower["steps"] < summary(budgeted)["steps"]


def test_a_plan_after_a_validation_can_end_the_run_there(tiny_bert, mrpc_dir, tmp_path, monkeypatch):
    """The first validation (step 8) costs far more than estimated (30 fake seconds): planned again after it, the
    budget has no room for another step and validation, so the run ends at that validation, complete."""
    from gluebox.training.budget import FAKE_CLOCK_VARIABLE

    monkeypatch.setenv(FAKE_CLOCK_VARIABLE, "token:0.01,validation:30")
    run = train(tiny_bert, mrpc_dir, tmp_path / "run", "--epochs", "3", "--eval_every_n_steps", "8",
                "--time_budget", "60s", "--warmup_steps", "0")
    assert [r["step"] for r in records(run)] == [8] and len(step_rows(run)) == 8
    result = summary(run)
    assert result["time_budget"]["planned_steps"] == 8 and result["time_budget"]["within_budget"]
    assert status(run)["status"] == "complete"
