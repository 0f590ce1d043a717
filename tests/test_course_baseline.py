"""benchmarks/course_baseline.py trains as the course project's script did, and bench_train.py can time it."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import RandomSampler

from conftest import REPO
from fixtures import write_mrpc

sys.path.insert(0, str(REPO / "benchmarks"))

import course_baseline  # noqa: E402

TRAIN_ROWS, DEV_ROWS = 80, 70
"""80 training rows: batches of 32, 32 and 16; 70 dev rows: 3 validation batches (2 in the sanity check)."""


def global_norm(module: torch.nn.Module) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in module.parameters()]))


class Probe(L.Callback):
    """Records what the course-script training does at each step.

    Before each optimizer step (that is, before Lightning clips) it scales the gradients to a
    global norm of 10; their norm after the step (AdamW leaves them as it used them) shows
    whether and how far the Trainer clipped."""

    def __init__(self):
        self.batch_shapes: list[tuple[int, ...]] = []
        self.val_shapes: list[tuple[int, ...]] = []
        self.sanity_batches = 0
        self.modes_in_training: list[bool] = []
        self.dropout_in_training_forward: list[bool] = []
        self.deterministic: list[bool] = []
        self.learning_rates: list[float] = []
        self.embedding_grads: list[tuple[torch.layout, bool]] = []
        self.norms_after_step: list[float] = []
        self.optimizer = None

    def on_fit_start(self, trainer, pl_module):
        for module in pl_module.model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.register_forward_pre_hook(self._dropout_called)

    def _dropout_called(self, module, args):
        if torch.is_grad_enabled():
            self.dropout_in_training_forward.append(module.training)

    def on_train_start(self, trainer, pl_module):
        self.optimizer = trainer.optimizers[0]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch_shapes.append(tuple(batch["input_ids"].shape))
        self.modes_in_training.append(any(m.training for m in pl_module.model.modules()))
        self.deterministic.append(torch.are_deterministic_algorithms_enabled())
        self.learning_rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.norms_after_step.append(float(global_norm(pl_module)))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.sanity_batches += trainer.sanity_checking
        self.val_shapes.append(tuple(batch["input_ids"].shape))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        weight = pl_module.model.get_input_embeddings().weight
        self.embedding_grads.append((weight.grad.layout, weight.grad.is_sparse))
        norm = global_norm(pl_module)
        for p in pl_module.parameters():
            p.grad.mul_(10 / norm)


@pytest.fixture(scope="module")
def mrpc(tmp_path_factory) -> Path:
    return write_mrpc(tmp_path_factory.mktemp("mrpc"), train_rows=TRAIN_ROWS, dev_rows=DEV_ROWS)


@pytest.fixture(scope="module")
def course_run(tiny_bert, mrpc, tmp_path_factory):
    """One epoch of the baseline on the tiny BERT, watched by a :class:`Probe`.

    It runs in the test process, whose global torch settings earlier in-process gluebox runs may
    have changed (deterministic algorithms): they are set as in the fresh process the course
    script runs in, and put back afterwards."""
    import torch

    output = tmp_path_factory.mktemp("course-run")
    probe, report = Probe(), course_baseline.EpochReport()
    printed = io.StringIO()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        with contextlib.redirect_stdout(printed):
            trainer = course_baseline.run(tiny_bert, str(mrpc), str(output), epochs=1, callbacks=[probe, report])
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    return trainer, probe, report, printed.getvalue(), output


def test_reader_keeps_bom_free_header_and_raw_quotes(mrpc):
    rows = course_baseline.read_mrpc(mrpc / "train.tsv")
    lines = (mrpc / "train.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]
    assert len(rows) == TRAIN_ROWS
    assert [r["idx"] for r in rows] == list(range(TRAIN_ROWS))
    assert [r["label"] for r in rows] == [int(line.split("\t")[0]) for line in lines]
    assert [r["sentence2"] for r in rows] == [line.split("\t")[4] for line in lines]
    assert any('"' in r["sentence2"] for r in rows)


def test_reader_on_real_mrpc(shared_glue):
    train = course_baseline.read_mrpc(shared_glue / "MRPC" / "train.tsv")
    dev = course_baseline.read_mrpc(shared_glue / "MRPC" / "dev.tsv")
    assert (len(train), sum(r["label"] for r in train)) == (3668, 2474)
    assert (len(dev), sum(r["label"] for r in dev)) == (408, 279)
    assert all(r["sentence1"] and r["sentence2"] for r in train + dev)


def test_mrpc_metric_is_glues_accuracy_and_f1():
    from sklearn.metrics import accuracy_score, f1_score

    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        preds, labels = torch.randint(0, 2, (50,), generator=generator), torch.randint(0, 2, (50,), generator=generator)
        metric = course_baseline.mrpc_metric(preds, labels)
        assert metric["accuracy"] == pytest.approx(accuracy_score(labels, preds))
        assert metric["f1"] == pytest.approx(f1_score(labels, preds))
    assert course_baseline.mrpc_metric(torch.zeros(4), torch.zeros(4)) == {"accuracy": 1.0, "f1": 0.0}


def test_batches_are_shuffled_32s_padded_to_128(course_run):
    trainer, probe, *_ = course_run
    assert probe.batch_shapes == [(32, 128), (32, 128), (16, 128)]
    assert set(probe.val_shapes) == {(32, 128), (6, 128)}
    loader = trainer.train_dataloader
    assert isinstance(loader.sampler, RandomSampler) and loader.batch_size == 32


def test_trains_with_every_module_in_eval_mode(course_run):
    _, probe, *_ = course_run
    assert len(probe.modes_in_training) == 3 and not any(probe.modes_in_training)
    assert probe.dropout_in_training_forward, "no dropout module ran in a training step"
    assert not any(probe.dropout_in_training_forward)


def test_plain_adamw_linear_warmup_dense_embedding_gradients(course_run):
    trainer, probe, *_ = course_run
    optimizer = probe.optimizer
    assert type(optimizer) is torch.optim.AdamW
    assert optimizer.defaults["fused"] is None and optimizer.defaults["foreach"] is None
    assert optimizer.defaults["lr"] == 2e-5 and optimizer.defaults["eps"] == 1e-8
    assert all(group["weight_decay"] == 0 for group in optimizer.param_groups)
    assert trainer.lr_scheduler_configs[0].interval == "step"
    assert probe.learning_rates == pytest.approx([0.0, 2e-5 / 50, 2 * 2e-5 / 50])
    assert probe.embedding_grads == [(torch.strided, False)] * 3


def test_gradients_clipped_to_norm_one(course_run):
    _, probe, *_ = course_run
    assert probe.norms_after_step == pytest.approx([1.0] * 3, rel=1e-4)


def test_seeded_not_deterministic_with_sanity_check(course_run):
    trainer, probe, *_ = course_run
    assert not any(probe.deterministic)
    assert probe.sanity_batches == 2
    assert trainer.global_step == 3


def test_epoch_end_checkpoint_has_optimizer_state(course_run):
    trainer, probe, _, _, output = course_run
    (checkpoint,) = output.rglob("*.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert (state["epoch"], state["global_step"]) == (0, 3)
    (optimizer_state,) = state["optimizer_states"]
    parameters = sum(len(group["params"]) for group in optimizer_state["param_groups"])
    assert parameters == len(list(trainer.lightning_module.parameters()))
    assert len(optimizer_state["state"]) == parameters
    assert all(int(s["step"]) == 3 and "exp_avg_sq" in s for s in optimizer_state["state"].values())
    assert state["lr_schedulers"][0]["last_epoch"] == 3


def test_prints_epoch_time_metrics_and_peak_rss(course_run):
    trainer, _, report, printed, _ = course_run
    (line,) = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert line == report.epochs[0]
    assert (line["epoch"], line["steps"]) == (0, 3)
    assert line["seconds"] > 0 and line["peak_rss_mb"] > 100
    assert line["accuracy"] == pytest.approx(float(trainer.callback_metrics["accuracy"]))
    assert 0 <= line["accuracy"] <= 1 and 0 <= line["f1"] <= 1 and line["val_loss"] > 0


def test_command_line_prints_json_lines(tiny_bert, mrpc, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["course_baseline.py", "--model", tiny_bert, "--data_dir", str(mrpc),
                                      "--max_steps", "2", "--output_dir", str(tmp_path)])
    course_baseline.main()
    epoch, end = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert (epoch["epoch"], epoch["steps"]) == (0, 2)
    assert (end["run"], end["steps"]) == ("end", 2)
    assert end["peak_rss_mb"] >= epoch["peak_rss_mb"] > 100 and end["seconds"] > epoch["seconds"] > 0
    assert len(list(tmp_path.rglob("*.ckpt"))) == 1


def test_bench_course_script_way_takes_turns(tiny_bert, mrpc, tmp_path):
    from transformers import AutoTokenizer

    output = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--model", tiny_bert, "--data_dir", str(mrpc),
         "--ways", "course-script", "--warmup", "1", "--steps", "2", "--output", str(output)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    (result,) = json.loads(output.read_text())["results"]
    rows = course_baseline.read_mrpc(mrpc / "train.tsv")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    lengths = [len(ids) for ids in tokenizer([r["sentence1"] for r in rows], [r["sentence2"] for r in rows],
                                             truncation=True, max_length=128)["input_ids"]]
    assert result["way"] == "course-script"
    assert (result["timed_steps"], result["batches_per_epoch"]) == (2, 3)
    assert result["padded_tokens_per_epoch"] == TRAIN_ROWS * 128
    assert result["real_tokens_per_epoch"] == sum(lengths)
    assert result["padded_tokens_per_second"] > result["tokens_per_second"] > 0
    assert result["seconds_per_epoch"] == pytest.approx(3 * result["seconds_per_step"])
    assert result["peak_rss_mb"] > 100
    spans = result["step_spans"]
    assert len(spans) == 3 and all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
