"""`gluebox sweep`: the sweep file, seeded sampling, stopped trials, the leaderboard, and a real
sweep of 4 tiny trials on a local Ray instance (2 at a time) that gluebox starts and shuts down."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from fixtures import write_mrpc
from gluebox.cli import main
from gluebox.errors import GlueboxError
from gluebox.sweep.report import TrialOutcome, rank_outcomes
from gluebox.sweep.spec import load_sweep

HAS_RAY = importlib.util.find_spec("ray") is not None


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("mrpc"))


def sweep_file(folder: Path, model: str, data: Path, **settings) -> Path:
    spec = {
        "base": {"model_name_or_path": model, "task_name": "mrpc", "data_dir": str(data), "epochs": 2,
                 "train_batch_size": 8, "eval_batch_size": 8, "max_seq_length": 64, "wandb_mode": "disabled"},
        "space": {"learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}, "warmup_steps": {"choice": [0, 2]},
                  "dropout_rate": {"choice": [0.0, 0.1]}},
        "trials": 4, "max_concurrent": 2, "seed": 0, **settings,
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_example_sweep_file_samples_the_same_trials_for_the_same_seed(tmp_path):
    example = REPO / "docs" / "sweep-mrpc.yaml"
    first, again = load_sweep(str(example)), load_sweep(str(example))
    assert first.trials == 8 and first.scheduler == "asha" and first.metric == "validation/accuracy"
    trials = first.trial_params()
    assert trials == again.trial_params() and len(trials) == 8
    assert all(1e-5 <= t["learning_rate"] <= 1e-4 and t["warmup_steps"] in (0, 50, 100) for t in trials)
    assert len({t["learning_rate"] for t in trials}) == 8
    other = yaml.safe_load(example.read_text()) | {"seed": 1}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    assert load_sweep(str(tmp_path / "other.yaml")).trial_params() != trials


@pytest.mark.parametrize("change, message", [
    ({"space": {"warmup_steps": {"uniform": [0, 10]}}}, "warmup_steps takes int values; use choice"),
    ({"space": {"learning_rate": {"loguniform": [0, 1e-3]}}}, "needs 0 < low < high"),
    ({"space": {"learning_rat": {"choice": [1e-3]}}}, "unknown flag 'learning_rat'"),
    ({"space": {}}, "space is empty"),
    ({"trails": 4}, "unknown key(s) trails"),
    ({"scheduler": "pbt"}, "scheduler must be one of fifo, asha"),
    ({"base": {"output_dir": "x"}}, "the sweep chooses each trial's directory"),
    ({"base": {"devices": 2}}, "each trial runs as one process"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, change, message):
    spec = {"base": {"task_name": "mrpc"}, "space": {"learning_rate": {"loguniform": [1e-5, 1e-4]}}} | change
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(GlueboxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_sweep(str(path))


def test_every_flag_not_fixed_by_the_sweep_is_searchable(tmp_path):
    """Every TrainConfig field not marked fixed_by_sweep (new flags included, with no change to the
    sweep) takes a choice of its values in the space, and each trial's config gets the drawn value;
    float fields also take uniform and loguniform ranges. The fixed ones are refused."""
    from gluebox.config import config_fields, value_type
    from gluebox.sweep.spec import FIXED_BY_SWEEP, trial_config

    samples = {int: 1, float: 0.25, bool: True, str: "a"}

    def values_of(f) -> list:
        """Two values of the flag: two of its choices, else its default (when it has one) and another."""
        if f.metadata.get("choices"):
            return list(f.metadata["choices"][:2])
        return [v for v in (f.default,) if v is not None] + [samples[value_type(f)]]

    searchable = [f for f in config_fields() if f.name not in FIXED_BY_SWEEP]
    assert {"learning_rate", "peft", "lora_r", "padding", "memory_budget"} <= {f.name for f in searchable}
    for f in searchable:
        choices = f.metadata.get("choices")
        values = values_of(f)
        spaces = [{"choice": values}]
        if value_type(f) is float and not choices:
            spaces += [{"uniform": [0.25, 0.5]}, {"loguniform": [0.25, 0.5]}]
        for space in spaces:
            path = tmp_path / "sweep.yaml"
            path.write_text(yaml.safe_dump({"base": {"task_name": "mrpc"}, "space": {f.name: space}, "trials": 6}))
            sweep = load_sweep(str(path))
            drawn = [params[f.name] for params in sweep.trial_params()]
            configs = [trial_config(sweep.base, {f.name: value}, tmp_path / "t", 1) for value in drawn]
            if "choice" in space:
                assert set(drawn) <= set(values), f.name
            else:
                assert all(0.25 <= value <= 0.5 for value in drawn), f.name
            if f.name != "progress_bar":  # trials never draw a progress bar
                assert [getattr(c, f.name) for c in configs] == [f.metadata["parse"](v) if f.metadata.get("parse")
                                                                 else v for v in drawn], f.name
    for f in config_fields():
        if f.name not in FIXED_BY_SWEEP:
            continue
        path = tmp_path / "fixed.yaml"
        path.write_text(yaml.safe_dump({"base": {"task_name": "mrpc"}, "space": {f.name: {"choice": values_of(f)}}}))
        with pytest.raises(GlueboxError, match=f"{f.name} cannot be searched over"):
            load_sweep(str(path))


def test_a_choice_outside_a_flags_choices_is_refused_before_any_trial(tmp_path, capsys):
    """A sweep that could draw a value the flag does not have is a one-line error when the file is
    read, whatever trial would draw it; a YAML config with one is refused like the flag."""
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": {"task_name": "mrpc"}, "trials": 1,
                                    "space": {"padding": {"choice": ["dynamic", "maxlength"]}}}))
    with pytest.raises(GlueboxError, match="space: --padding must be one of dynamic, max_length, got 'maxlength'"):
        load_sweep(str(path))
    config = tmp_path / "run.yaml"
    config.write_text("padding: maxlength\n")
    assert main(["train", "--config", str(config), "--output_dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == \
        "gluebox: error: --padding must be one of dynamic, max_length, got 'maxlength'\n"
    assert not (tmp_path / "run").exists()


def test_a_trial_stopped_by_tune_ends_as_a_stopped_run(tiny_bert, mrpc_dir, tmp_path):
    """Tune stops a trial by raising SystemExit(0) in its next report: the run says why, and when."""
    from gluebox.errors import RunStopped
    from gluebox.recipe.train import train
    from gluebox.sweep.spec import trial_config
    from gluebox.sweep.trial import STOPPED_BY_SCHEDULER, TuneReporter

    reported = []

    def report(metrics):
        reported.append(metrics)
        raise SystemExit(0)

    base = {"model_name_or_path": tiny_bert, "data_dir": str(mrpc_dir), "epochs": 3, "train_batch_size": 8,
            "max_seq_length": 64, "wandb_mode": "disabled"}
    config = trial_config(base, {"learning_rate": 1e-3}, tmp_path / "trial", 1)
    with pytest.raises(RunStopped, match="after 1 epoch"):
        train(config, callbacks=[TuneReporter(report, config.output_dir, STOPPED_BY_SCHEDULER)])
    status = json.loads((tmp_path / "trial" / "status.json").read_text())
    assert status["status"] == "stopped" and status["epochs_completed"] == 1 and "ASHA" in status["reason"]
    assert not (tmp_path / "trial" / "summary.json").exists()
    assert (tmp_path / "trial" / "checkpoints" / "last.ckpt").exists()
    assert reported[0]["epoch"] == 1 and "validation/accuracy" in reported[0]


def test_leaderboard_order_for_a_loss():
    def outcome(name, best, status="complete"):
        return TrialOutcome(name, {}, status, 2, best, 1 if best is not None else None, best)

    ranked = rank_outcomes([outcome("a", 0.7), outcome("b", None, "failed"), outcome("c", 0.5, "stopped"),
                            outcome("d", 0.6)], "min")
    assert [o.name for o in ranked] == ["c", "d", "a", "b"] and [o.rank for o in ranked] == [1, 2, 3, 4]


def test_missing_ray_is_a_one_line_error(tiny_bert, mrpc_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["sweep", str(sweep_file(tmp_path, tiny_bert, mrpc_dir)), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gluebox: error: gluebox sweep needs Ray Tune: pip install 'gluebox[sweep]'"]


@pytest.mark.skipif(not HAS_RAY, reason="Ray Tune is not installed (pip install 'gluebox[sweep]')")
def test_sweep_on_a_local_ray_instance(tiny_bert, mrpc_dir, tmp_path, monkeypatch):
    """4 trials, 2 at a time, on a local Ray instance gluebox starts (loopback only) and shuts down."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    path = sweep_file(tmp_path, tiny_bert, mrpc_dir, cpus_per_trial=1)
    out = tmp_path / "sweep"
    try:
        assert main(["sweep", str(path), "--output_dir", str(out)]) == 0
    finally:
        import ray

        if ray.is_initialized():  # only when the sweep failed half-way
            ray.shutdown()
    assert not ray.is_initialized()

    expected = load_sweep(str(path)).trial_params()
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["metric"] == "validation/accuracy" and summary["mode"] == "max"
    assert summary["statuses"] == {"complete": 4}
    by_name = {t["name"]: t for t in summary["trials"]}
    assert [by_name[f"trial-{i:03d}"]["params"] for i in range(4)] == expected
    for name in by_name:
        run = out / "trials" / name
        assert json.loads((run / "status.json").read_text())["status"] == "complete"
        run_summary = json.loads((run / "summary.json").read_text())
        assert run_summary["epochs"] == 2
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["learning_rate"] == by_name[name]["params"]["learning_rate"]
        assert by_name[name]["best"] == run_summary["best"]["validation/accuracy"]

    with open(out / "leaderboard.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    scores = [float(r["best validation/accuracy"]) for r in rows]
    assert len(rows) == 4 and scores == sorted(scores, reverse=True) and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert summary["best"]["name"] == rows[0]["trial"]
    table = (out / "leaderboard.md").read_text()
    assert "| rank | trial | status |" in table and table.count("| complete |") == 4
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
