"""The other commands on a real (tiny) finished run: evaluate, predict, plot, compare, cache; W&B offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import train_args
from fixtures import write_mrpc
from gluebox.cli import main

FAKE_KEY = "gluebox-fake-key-0123456789abcdef0123456789abcdef0123"


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("mrpc"))


@pytest.fixture(scope="module")
def finished_run(tiny_bert, mrpc_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "done"
    assert main(train_args(tiny_bert, run, "--data_dir", str(mrpc_dir), "--epochs", "2", "--train_batch_size", "8")) == 0
    return run


def test_evaluate_matches_the_run_and_writes_json(finished_run, tmp_path, capsys):
    output = tmp_path / "eval.json"
    assert main(["evaluate", str(finished_run / "checkpoints" / "last.ckpt"), "--output", str(output)]) == 0
    scored = json.loads(output.read_text())["validation"]
    last = json.loads((finished_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert scored["examples"] == 16
    assert scored["accuracy"] == last["validation/accuracy"]
    assert scored["fingerprint"] == last["validation/fingerprint"]
    assert scored["loss"] == pytest.approx(last["validation/loss"], rel=1e-6)
    assert "validation: loss" in capsys.readouterr().out


def test_evaluate_a_file(finished_run, mrpc_dir, tmp_path):
    output = tmp_path / "eval.json"
    assert main(["evaluate", str(finished_run), "--file", str(mrpc_dir / "train.tsv"), "--output", str(output)]) == 0
    assert json.loads(output.read_text())["train.tsv"]["examples"] == 48


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_predict_writes_one_row_per_input(finished_run, tmp_path, suffix):
    output = tmp_path / f"MRPC{suffix}"
    assert main(["predict", str(finished_run), "--output", str(output)]) == 0
    lines = output.read_text().splitlines()
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in lines]
        assert [r["id"] for r in rows] == [str(i) for i in range(10)]
        assert {r["prediction"] for r in rows} <= {"0", "1"}
    else:
        separator = "\t" if suffix == ".tsv" else ","
        assert lines[0] == ("index\tprediction" if suffix == ".tsv" else "id,prediction")
        assert [line.split(separator)[0] for line in lines[1:]] == [str(i) for i in range(10)]
        assert {line.split(separator)[1] for line in lines[1:]} <= {"0", "1"}


def test_plot_writes_png_and_markdown(finished_run, tmp_path):
    output = tmp_path / "curves.png"
    assert main(["plot", str(finished_run), str(finished_run), "--output", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = output.with_suffix(".md").read_text().splitlines()
    assert table[0].startswith("| run | epochs |") and "validation/accuracy" in table[0]
    assert len(table) == 4 and table[2].startswith("| done | 2 |")


@pytest.fixture(scope="module")
def one_epoch_run(tiny_bert, mrpc_dir, tmp_path_factory):
    """A 1-epoch run of 12 steps (long enough for the measured time estimate), and what it printed."""
    import contextlib
    import io

    run = tmp_path_factory.mktemp("runs") / "one-epoch"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(train_args(tiny_bert, run, "--data_dir", str(mrpc_dir), "--epochs", "1", "--train_batch_size", "4")) == 0
    (run.parent / "stdout.txt").write_text(printed.getvalue())
    return run


def test_train_says_how_long_it_will_take_and_ends_with_a_summary(one_epoch_run, tmp_path, capsys):
    import shlex

    lines = (one_epoch_run.parent / "stdout.txt").read_text().splitlines()
    plan = next(i for i, line in enumerate(lines) if line.startswith("memory plan: "))
    assert lines[plan + 1].startswith("time estimate: ") and " per epoch on this machine (12 steps, " in lines[plan + 1]
    assert "a measured estimate follows step 6" in lines[plan + 1]
    assert any(line.startswith("measured over steps 2-6: ") and "tokens/s" in line and "per epoch" in line
               and "done around" in line for line in lines[plan + 2:])
    summary = json.loads((one_epoch_run / "summary.json").read_text())
    end = lines.index(f"run complete: {one_epoch_run}")
    tail = lines[end + 1:]
    assert tail[0].startswith("  best epoch 1 of 1 (by validation/accuracy): ")
    assert f"validation/accuracy {summary['best']['validation/accuracy']:.4f}" in tail[0]
    assert tail[1].startswith("  time ") and "peak memory " in tail[1] and " GB RSS (estimated " in tail[1]
    assert tail[2] == f"  best model: {one_epoch_run / 'best_model'} (Hugging Face format, with a model card)"
    plot_command, predict_command = tail[3].split(":", 1)[1].split(), tail[4].split(":", 1)[1].split()
    assert plot_command[:3] == ["gluebox", "plot", str(one_epoch_run)]
    assert predict_command[:3] == ["gluebox", "predict", str(one_epoch_run)]
    # The commands it prints work as printed.
    for command in (plot_command, predict_command):
        assert main(shlex.split(" ".join(command))[1:]) == 0
    assert (one_epoch_run / "learning_curves.png").exists() and (one_epoch_run / "predictions.tsv").exists()


def test_plot_has_whole_epoch_ticks_and_the_training_loss_of_every_step(one_epoch_run, finished_run, tmp_path):
    import matplotlib.pyplot as plt

    from gluebox.commands.plot import curves_figure
    from gluebox.training.recorders import read_step_rows

    for run in (one_epoch_run, finished_run):
        figure, _ = curves_figure([str(run)])
        figure.canvas.draw()
        steps = read_step_rows(run / "steps" / "metrics.csv")
        epochs = len((run / "metrics.jsonl").read_text().splitlines())
        for axis in figure.axes:
            low, high = axis.get_xlim()
            ticks = [t for t in axis.get_xticks() if low <= t <= high]
            assert ticks == list(range(epochs + 1)), (axis.get_title(), ticks)  # 0 .. last epoch, nothing between
            assert all(label.get_text() in {str(e) for e in range(epochs + 1)} for label in axis.get_xticklabels()
                       if low <= label.get_position()[0] <= high)
        train_axis = figure.axes[0]
        each_step = next(line for line in train_axis.get_lines() if "(each step)" in line.get_label())
        assert list(each_step.get_ydata()) == [float(r["loss"]) for r in steps]
        x = list(each_step.get_xdata())
        assert len(x) == len(steps) == (12 if run == one_epoch_run else 6 * epochs) and x[-1] == epochs and x == sorted(x) and x[0] > 0
        plt.close(figure)
    output = tmp_path / "one.png"
    assert main(["plot", str(one_epoch_run), "--output", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_model_has_a_model_card_with_the_best_epochs_metrics(finished_run, mrpc_dir):
    import yaml

    summary = json.loads((finished_run / "summary.json").read_text())
    text = (finished_run / "best_model" / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert {"text-classification", "glue", "mrpc"} <= set(meta["tags"]) and meta["datasets"] == ["nyu-mll/glue"]
    assert meta["metrics"] == ["accuracy", "f1"] and "base_model" not in meta  # a local folder is no Hub id
    (index,) = meta["model-index"]
    assert index["name"] == finished_run.name
    (result,) = index["results"]
    assert result["dataset"] == {"name": "GLUE MRPC", "type": "nyu-mll/glue", "config": "mrpc", "split": "validation"}
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {"accuracy": summary["best"]["validation/accuracy"], "f1": summary["best"]["validation/f1"]}
    body = text.split("---\n", 2)[2]
    assert f"(epoch {summary['best_epoch']} of 2," in body
    for heading in ("## Task", "## Data", "## Metrics", "## Training hyperparameters", "## How to use"):
        assert heading in body
    assert "Trained on 48 examples" in body and "| `learning_rate` | 2e-05 |" in body
    assert "AutoModelForSequenceClassification.from_pretrained(path)" in body
    assert str(mrpc_dir) not in text and str(finished_run.parent) not in text  # no local paths

    from huggingface_hub import ModelCard

    card = ModelCard.load(finished_run / "best_model" / "README.md")
    assert card.data.library_name == "transformers"
    parsed = card.data.eval_results
    assert [(r.metric_type, r.metric_value) for r in parsed] == list(values.items())
    assert {(r.dataset_type, r.dataset_config, r.dataset_split) for r in parsed} == {("nyu-mll/glue", "mrpc", "validation")}


def test_model_card_of_two_validation_splits_and_of_regression():
    import yaml
    from huggingface_hub import ModelCard

    from gluebox.config import TrainConfig
    from gluebox.runs.model_card import model_card
    from gluebox.tasks import GLUE_TASKS

    mnli = {"validation_matched/accuracy": 0.81, "validation_matched/loss": 0.5, "validation_mismatched/accuracy": 0.82,
            "validation_mismatched/loss": 0.49, "validation_matched/fingerprint": "ab"}
    text = model_card(TrainConfig(task_name="mnli"), GLUE_TASKS["mnli"], mnli, 2, 1000, "mnli-run")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["base_model"] == "distilbert-base-uncased"  # a Hub id
    results = meta["model-index"][0]["results"]
    assert [(r["dataset"]["split"], r["metrics"][0]["value"]) for r in results] == [
        ("validation_matched", 0.81), ("validation_mismatched", 0.82)]
    assert len(ModelCard(text).data.eval_results) == 2

    stsb = {"validation/pearson": 0.8, "validation/spearmanr": 0.79, "validation/loss": 0.6}
    config = TrainConfig(task_name="stsb", train_file="/home/someone/scores.csv", validation_file="/home/someone/dev.csv")
    text = model_card(config, GLUE_TASKS["stsb"], stsb, 1, 10, "run")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert "datasets" not in meta and "glue" not in meta["tags"]
    assert [m["type"] for m in meta["model-index"][0]["results"][0]["metrics"]] == ["pearson", "spearmanr"]
    assert "logits.item()" in text and "/home/someone" not in text
    assert "user's own file `scores.csv`; validated on the rows of `dev.csv`" in text  # a task.json without row counts


def test_compare_reports_the_first_difference(finished_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.yaml", "task.json", "summary.json"):
        (copy / name).write_bytes((finished_run / name).read_bytes())
    records = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    records[1]["validation/loss"] = records[1]["validation/loss"] + 1e-12
    (copy / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    capsys.readouterr()
    assert main(["compare", str(finished_run), str(copy)]) == 1
    assert "epoch 2, validation/loss" in capsys.readouterr().out


def test_cache_with_local_model_and_data_needs_no_network(tiny_bert, mrpc_dir, capsys):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert main(["cache", "--model_name_or_path", tiny_bert, "--task_name", "mrpc", "--data_dir", str(mrpc_dir)]) == 0
    out = capsys.readouterr().out
    assert "train 48" in out and "validation 16" in out and "test 10" in out


def test_wandb_offline_run_carries_metrics_and_never_the_key(tiny_bert, mrpc_dir, tmp_path, monkeypatch, capfd):
    """An offline W&B run is written inside the run directory; a planted key appears nowhere."""
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "tracked"
    args = train_args(tiny_bert, run, "--data_dir", str(mrpc_dir), "--epochs", "1", "--train_batch_size", "8")
    args[args.index("--wandb_mode") + 1] = "offline"
    assert main(args) == 0
    out, err = capfd.readouterr()
    offline_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    wandb_files = list(offline_runs[0].rglob("*.wandb"))
    assert wandb_files and wandb_files[0].stat().st_size > 0
    assert b"validation/accuracy" in wandb_files[0].read_bytes()
    assert FAKE_KEY not in out + err
    for path in run.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def wandb_records(run) -> list:
    """The records of a run's one offline W&B run.

    wandb 0.31 writes them from its Go core and ships no Python reader: the file is a 7-byte header
    (``:W&B``, magic, version), then LevelDB's log format (32 KiB blocks; each chunk a 7-byte header
    of CRC, length and type: full, first, middle or last), each record a ``wandb_internal_pb2.Record``.
    """
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    data, block = path.read_bytes(), 32 * 1024
    assert data[:4] == b":W&B"
    position, chunks, records = 7, [], []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunks.append(data[position + 7:position + 7 + length])
        position += 7 + length
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
    assert not chunks and position == len(data), "the .wandb file did not parse to its end"
    return records


def test_log_model_uploads_the_exported_best_model(tiny_bert, mrpc_dir, tmp_path, monkeypatch):
    """--log_model puts best_model/ into the offline W&B run as a `model` artifact (sent by `wandb
    sync`), every file with its digest; without the flag no artifact is logged."""
    import base64
    import hashlib

    monkeypatch.setenv("WANDB_MODE", "offline")

    def artifacts(name: str, *extra: str) -> list:
        run = tmp_path / name
        args = train_args(tiny_bert, run, "--data_dir", str(mrpc_dir), "--epochs", "1", "--train_batch_size", "8",
                          *extra)
        args[args.index("--wandb_mode") + 1] = "offline"
        assert main(args) == 0
        return run, [r.artifact for r in wandb_records(run) if r.WhichOneof("record_type") == "artifact"]

    run, logged = artifacts("with", "--log_model")
    (artifact,) = logged
    assert artifact.type == "model" and set(artifact.aliases) >= {"best"}
    entries = {entry.path: entry.digest for entry in artifact.manifest.contents}
    exported = {p.name: p for p in (run / "best_model").iterdir() if p.is_file()}
    assert {"config.json", "model.safetensors"} <= set(entries) and set(entries) == set(exported)
    for name, path in exported.items():
        assert entries[name] == base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode(), name
    assert artifacts("without")[1] == []


def test_wandb_auto_mode_is_offline_without_a_key(monkeypatch, tmp_path):
    from gluebox.training.tracking import resolve_mode

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    assert resolve_mode("auto") == "online"
    assert resolve_mode("disabled") == "disabled"
