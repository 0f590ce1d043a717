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
