"""Real GLUE data from ../shared (skipped only when it is absent) and the real pretrained MiniLM."""

from __future__ import annotations

import json

import pytest

from conftest import minilm_path, train_args
from gluebox.cli import main

MRPC_MAJORITY_RATE = 279 / 408
"""Validation accuracy of always predicting "paraphrase" on MRPC's dev set (0.684)."""


def summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize(
    ("task", "folder", "metrics", "examples"),
    [
        ("rte", "RTE", ("validation/accuracy",), 277),
        ("sst2", "SST-2", ("validation/accuracy",), 872),
        ("mrpc", "MRPC", ("validation/accuracy", "validation/f1"), 408),
    ],
)
def test_real_glue_tasks_train_and_report_their_metrics(shared_glue, tiny_bert, tmp_path, task, folder, metrics, examples):
    run = tmp_path / task
    args = train_args(tiny_bert, run, "--task_name", task, "--data_dir", str(shared_glue / folder),
                      "--max_train_samples", "256", "--epochs", "1")
    assert main(args) == 0
    final = summary(run)["final"]
    for name in metrics:
        assert 0.0 <= final[name] <= 1.0
    evaluated = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--output", str(evaluated)]) == 0
    assert json.loads(evaluated.read_text())["validation"]["examples"] == examples


@pytest.mark.slow
def test_pretrained_minilm_learns_mrpc(shared_glue, tmp_path):
    """End to end: the real pretrained model on the real MRPC beats the majority class."""
    run = tmp_path / "minilm-mrpc"
    args = train_args(minilm_path(), run, "--task_name", "mrpc", "--data_dir", str(shared_glue / "MRPC"), "--epochs", "2")
    assert main(args) == 0
    result = summary(run)
    assert result["final"]["validation/accuracy"] > MRPC_MAJORITY_RATE
    assert result["final"]["validation/f1"] > 0.8
    assert result["train_examples"] == 3668
