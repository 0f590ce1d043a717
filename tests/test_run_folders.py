"""Run folders a user can trust: a marker in each, ``--overwrite`` that removes only gluebox's own
files (runs, sweeps), default names that never collide (several processes at once), checkpoints
that belong to their run, NaN metrics that are never the best, a ``best_model/`` swap that always
leaves a model in place, and ``--help`` for every command."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, start_gluebox, train_args, wait_until_paused, write_tsv
from fixtures import write_mrpc
from gluebox.cli import build_parser, main

MARKER = ".gluebox.json"

STEPS_PER_EPOCH = 6
SETTINGS = ("--task_name", "mrpc", "--train_batch_size", "8", "--eval_batch_size", "8", "--max_seq_length", "64")
"""48 training examples in batches of 8: 6 steps an epoch."""


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory) -> Path:
    return write_mrpc(tmp_path_factory.mktemp("mrpc"))


def args(model: str, data: Path, output: Path, *extra: str) -> list[str]:
    return train_args(model, output, "--data_dir", str(data), *SETTINGS, "--epochs", "1", *extra)


def refused(capsys, argv: list[str], phrase: str) -> str:
    """The command ends with one line on stderr holding ``phrase``, exit code 2; the line."""
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert phrase in err, err
    return err.strip()


def read_marker(folder: Path) -> dict | None:
    """The folder's marker, as a user would read it (None when there is none)."""
    path = folder / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` and the bytes of its files."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


# --overwrite ------------------------------------------------------------------------------------


def test_a_folder_of_the_users_own_is_never_taken_for_a_run(tiny_bert, mrpc_dir, tmp_path, capsys):
    """The issue's case: the user's YAML beside their notes, and the run pointed at that folder."""
    exp = tmp_path / "exp"
    exp.mkdir()
    settings = {"model_name_or_path": tiny_bert, "data_dir": str(mrpc_dir), "task_name": "mrpc", "epochs": 1,
                "wandb_mode": "disabled", "progress_bar": False}
    (exp / "config.yaml").write_text(yaml.safe_dump(settings))
    (exp / "notes.txt").write_text("what I tried and why")
    before = snapshot(exp)
    command = ["train", "--config", str(exp / "config.yaml"), "--output_dir", str(exp)]

    line = refused(capsys, command, f"--output_dir {exp} already exists and is not a gluebox run directory")
    assert "(it holds config.yaml, notes.txt)" in line and "--resume" not in line
    line = refused(capsys, [*command, "--overwrite"], "nothing was deleted")
    assert f"--output_dir {exp} is not a gluebox run directory (it holds config.yaml, notes.txt)" in line
    assert "--resume" not in line
    assert snapshot(exp) == before


def test_overwrite_removes_only_what_gluebox_wrote(tiny_bert, mrpc_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(args(tiny_bert, mrpc_dir, run, "--seed", "1")) == 0
    (run / "notes.txt").write_text("mine")
    (run / "plots").mkdir()
    (run / "plots" / "curve.png").write_bytes(b"png")
    before = snapshot(run)

    line = refused(capsys, args(tiny_bert, mrpc_dir, run, "--seed", "2", "--overwrite"),
                   "--overwrite would delete notes.txt, plots from the run directory")
    assert "nothing was deleted" in line
    assert snapshot(run) == before

    (run / "notes.txt").unlink()
    (run / "plots" / "curve.png").unlink()
    (run / "plots").rmdir()
    (run / ".config.yaml.x1y2.tmp").write_text("left by a kill during a write")  # gluebox's own temporary
    first = read_marker(run)
    assert first["kind"] == "run" and first["command"].startswith("gluebox train --model_name_or_path")
    assert main(args(tiny_bert, mrpc_dir, run, "--seed", "2", "--overwrite")) == 0
    assert json.loads((run / "summary.json").read_text())["seed"] == 2
    assert read_marker(run)["id"] != first["id"]
    assert not (run / ".config.yaml.x1y2.tmp").exists()


def test_a_run_from_before_the_marker_is_still_a_run(tiny_bert, mrpc_dir, tmp_path, capsys):
    """A run directory of an earlier gluebox (status.json, config.yaml and task.json, no marker)."""
    run = tmp_path / "run"
    assert main(args(tiny_bert, mrpc_dir, run)) == 0
    (run / MARKER).unlink(missing_ok=True)
    line = refused(capsys, args(tiny_bert, mrpc_dir, run), f"run directory {run} already exists and is complete")
    assert "--overwrite" in line
    (run / "extra.csv").write_text("a,b\n")
    refused(capsys, args(tiny_bert, mrpc_dir, run, "--overwrite"), "--overwrite would delete extra.csv")
    (run / "extra.csv").unlink()
    assert main(args(tiny_bert, mrpc_dir, run, "--overwrite")) == 0
    assert read_marker(run)["kind"] == "run"


def test_overwrite_never_empties_the_current_folder_or_home(tiny_bert, mrpc_dir, tmp_path, capsys, monkeypatch):
    """A project folder that happens to hold a config.yaml, given as `--output_dir . --overwrite`."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "model.py").write_text("print('mine')\n")
    (project / "config.yaml").write_text("task_name: mrpc\n")
    (project / "status.json").write_text('{"status": "draft"}')
    before = snapshot(project)
    monkeypatch.chdir(project)
    refused(capsys, args(tiny_bert, mrpc_dir, Path("."), "--overwrite"), "nothing was deleted")
    assert snapshot(project) == before

    home = tmp_path / "home"  # holds what an old run holds, and nothing else
    home.mkdir()
    for name, text in (("status.json", '{"status": "failed"}'), ("config.yaml", "seed: 1\n"), ("task.json", "{}")):
        (home / name).write_text(text)
    monkeypatch.setenv("HOME", str(home))
    refused(capsys, args(tiny_bert, mrpc_dir, home, "--overwrite"), f"--overwrite never replaces {home}")
    assert sorted(p.name for p in home.iterdir()) == ["config.yaml", "status.json", "task.json"]


def write_sweep_file(folder: Path, model: str, data: Path) -> Path:
    spec = {"base": {"model_name_or_path": model, "task_name": "mrpc", "data_dir": str(data), "epochs": 1,
                     "wandb_mode": "disabled"},
            "space": {"learning_rate": {"choice": [1e-4, 1e-3]}}, "trials": 2, "max_concurrent": 1}
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_sweep_overwrite_deletes_nothing_it_did_not_write(tiny_bert, mrpc_dir, tmp_path, capsys, monkeypatch):
    """`gluebox sweep --overwrite` on the user's folder, on `.`, and on a sweep folder with a file of the user's."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    sweep_file = write_sweep_file(mine, tiny_bert, mrpc_dir)
    before = snapshot(mine)
    for output in (str(mine), "."):
        monkeypatch.chdir(mine)
        line = refused(capsys, ["sweep", str(sweep_file), "--output_dir", output, "--overwrite"],
                       "is not a gluebox sweep folder (it holds search.yaml, thesis.tex)")
        assert "nothing was deleted" in line
        assert snapshot(mine) == before

    # A sweep folder gluebox made, with a file of the user's added: refused; without it, replaced.
    from gluebox.commands.sweep import SWEEP
    from gluebox.runs.folders import claim

    old = claim(tmp_path / "old-sweep", SWEEP)
    old.take()
    (old.path / "sweep.yaml").write_text("trials: 2\n")
    (old.path / "trials" / "trial-000").mkdir(parents=True)
    (old.path / "trials" / "trial-000" / "status.json").write_text('{"status": "complete"}')
    (old.path / "leaderboard.md").write_text("| rank |\n")
    (old.path / "my-analysis.ipynb").write_text("{}")
    before = snapshot(old.path)
    refused(capsys, ["sweep", str(sweep_file), "--output_dir", str(old.path), "--overwrite"],
            "--overwrite would delete my-analysis.ipynb from the sweep folder")
    assert snapshot(old.path) == before
    (old.path / "my-analysis.ipynb").unlink()
    new = claim(old.path, SWEEP, overwrite=True)
    assert new.replaces and read_marker(old.path)["id"] == old.id  # nothing changes before take()
    new.take()
    assert sorted(p.name for p in old.path.iterdir()) == [MARKER] and read_marker(old.path)["id"] == new.id


# Names that never collide -----------------------------------------------------------------------


def _claim_in_a_process(parent: str, barrier, results) -> None:
    from gluebox.runs.folders import RUN, claim_new_name

    barrier.wait()
    results.put(str(claim_new_name(Path(parent), "mrpc-model-20240102-030405", RUN).path))


def test_processes_claiming_the_same_default_name_at_once_get_one_folder_each(tmp_path):
    count = 6
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(count), context.Queue()
    processes = [context.Process(target=_claim_in_a_process, args=(str(tmp_path), barrier, results))
                 for _ in range(count)]
    for process in processes:
        process.start()
    paths = [results.get(timeout=60) for _ in range(count)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    stem = "mrpc-model-20240102-030405"
    assert sorted(Path(p).name for p in paths) == sorted([stem] + [f"{stem}-{n}" for n in range(2, count + 1)])
    assert len({read_marker(Path(p))["id"] for p in paths}) == count


FIXED_TIME = "20240102-030405"
SITECUSTOMIZE = f"""
import time

_strftime = time.strftime


def strftime(format, *args):
    # Every process of the test is "started in the same second".
    return {FIXED_TIME!r} if format == "%Y%m%d-%H%M%S" else _strftime(format, *args)


time.strftime = strftime
"""


@pytest.fixture
def same_second(tmp_path, monkeypatch) -> Path:
    """gluebox processes started from here on read the same time of day (a sitecustomize on
    PYTHONPATH), so their default names collide however fast the machine is; their runs folder."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    runs = tmp_path / "runs"
    monkeypatch.setenv("GLUEBOX_RUNS_DIR", str(runs))
    return runs


def test_three_runs_started_at_once_get_three_complete_folders(tiny_bert, mrpc_dir, same_second):
    """`for s in 1 2 3; do gluebox train --seed $s & done`: three folders, each one run's, complete."""
    command = ["train", "--model_name_or_path", tiny_bert, "--data_dir", str(mrpc_dir), *SETTINGS, "--epochs", "1",
               "--wandb_mode", "disabled", "--no-progress_bar"]
    processes = {seed: start_gluebox([*command, "--seed", str(seed)]) for seed in (1, 2, 3)}
    for seed, process in processes.items():
        assert process.wait(timeout=600) == 0, process.stderr.read().decode()
        process.stderr.close()

    stem = f"mrpc-{Path(tiny_bert).name}-{FIXED_TIME}"
    folders = sorted(same_second.iterdir())
    assert [f.name for f in folders] == [stem, f"{stem}-2", f"{stem}-3"]
    seeds, ids = set(), set()
    for folder in folders:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        assert json.loads((folder / "status.json").read_text())["status"] == "complete"
        assert config["output_dir"] == str(folder) and summary["seed"] == config["seed"]
        assert len((folder / "metrics.jsonl").read_text().splitlines()) == 1
        assert len((folder / "steps" / "metrics.csv").read_text().splitlines()) == 1 + STEPS_PER_EPOCH
        marker = read_marker(folder)
        assert marker["command"].startswith("gluebox train ") and f"--seed {config['seed']}" in marker["command"]
        checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert checkpoint["run"]["id"] == marker["id"] and checkpoint["global_step"] == STEPS_PER_EPOCH
        assert (folder / "best_model" / "config.json").is_file()
        seeds.add(config["seed"])
        ids.add(marker["id"])
    assert seeds == {1, 2, 3} and len(ids) == 3


@pytest.mark.parametrize("launcher", ["lightning", "torchrun"])
def test_only_rank_0_claims_and_the_other_rank_writes_nothing_of_its_own(tiny_bert, mrpc_dir, same_second, launcher):
    """Two processes, default name already taken by a folder of the user's: rank 0 claims `-2`; rank 1,
    which does not claim, trains into rank 0's folder (it learns the path from rank 0)."""
    stem = f"mrpc-{Path(tiny_bert).name}-{FIXED_TIME}"
    (same_second / stem).mkdir(parents=True)
    (same_second / stem / "mine.txt").write_text("not a run")
    command = ["train", "--model_name_or_path", tiny_bert, "--data_dir", str(mrpc_dir), *SETTINGS, "--epochs", "1",
               "--wandb_mode", "disabled", "--no-progress_bar", "--accelerator", "cpu", "--devices", "2",
               "--num_threads", "1"]
    prefix = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gluebox"]
              if launcher == "torchrun" else [sys.executable, "-m", "gluebox"])
    result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in same_second.iterdir()) == [stem, f"{stem}-2"]
    assert [p.name for p in (same_second / stem).iterdir()] == ["mine.txt"]
    run = same_second / f"{stem}-2"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and json.loads((run / "status.json").read_text())["status"] == "complete"
    assert len((run / "steps" / "metrics.csv").read_text().splitlines()) == 1 + STEPS_PER_EPOCH
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["run"]["id"] == read_marker(run)["id"]


def test_a_start_refused_after_the_claim_gives_the_folder_back(tmp_path, mrpc_dir, capsys, monkeypatch):
    """A model that does not load is found after the folder was claimed: nothing is left, as before."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    runs = tmp_path / "runs"
    monkeypatch.setenv("GLUEBOX_RUNS_DIR", str(runs))
    command = ["train", "--model_name_or_path", str(broken), "--data_dir", str(mrpc_dir), *SETTINGS,
               "--wandb_mode", "disabled", "--no-progress_bar"]
    refused(capsys, command, "gluebox: error: ")
    assert not runs.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(capsys, [*command, "--output_dir", str(empty)], "gluebox: error: ")
    assert list(empty.iterdir()) == []


def test_suite_and_sweep_default_folders_never_collide(tmp_path, monkeypatch, tiny_bert):
    from gluebox.commands.sweep import claim_sweep_dir
    from gluebox.suite.spec import new_suite

    monkeypatch.setenv("GLUEBOX_RUNS_DIR", str(tmp_path))
    monkeypatch.setattr("time.strftime", lambda format, *rest: FIXED_TIME)
    shared = {"model_name_or_path": tiny_bert}
    first, second = new_suite(None, ["rte"], shared, {}), new_suite(None, ["rte"], shared, {})
    assert first.path != second.path and second.path.name == f"{first.path.name}-2"
    assert second.configs["rte"]["output_dir"] == str(second.path / "runs" / "rte")
    sweeps = [claim_sweep_dir("search.yaml", None, False).path for _ in range(2)]
    assert [p.name for p in sweeps] == [f"sweep-search-{FIXED_TIME}", f"sweep-search-{FIXED_TIME}-2"]


# Checkpoints belong to their run ----------------------------------------------------------------


def interrupt(command: list[str], pauses: Path, step: int) -> None:
    """Run `gluebox train` until it holds after ``step``, then stop it with SIGINT (a checkpoint, exit 130)."""
    process = start_gluebox(command, (step,), pauses)
    wait_until_paused(process, pauses, step)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130, process.stderr.read().decode()
    process.stderr.close()


def test_a_run_never_resumes_from_another_runs_checkpoint(tiny_bert, mrpc_dir, tmp_path, capsys):
    """Two runs given the same --checkpoint_dir (the second with --overwrite): the second replaces the
    first's last.ckpt, and the first then refuses to continue from it."""
    shared = tmp_path / "scratch" / "ckpt"
    first, second = tmp_path / "first", tmp_path / "second"
    interrupt(args(tiny_bert, mrpc_dir, first, "--epochs", "2", "--checkpoint_dir", str(shared)), tmp_path / "p1", 5)
    interrupt(args(tiny_bert, mrpc_dir, second, "--epochs", "2", "--checkpoint_dir", str(shared), "--overwrite",
                   "--seed", "5"), tmp_path / "p2", 3)  # first's files have rows past this step: nothing else objects
    before = snapshot(first)
    line = refused(capsys, ["train", "--resume", str(first)], f"cannot resume {first}: its checkpoint {shared / 'last.ckpt'}"
                   f" belongs to another run ({second}), which shared its --checkpoint_dir")
    assert line.endswith(f"start {first} again with --overwrite")
    assert snapshot(first) == before
    assert main(["train", "--resume", str(second)]) == 0  # its own checkpoint
    assert json.loads((second / "summary.json").read_text())["seed"] == 5


# NaN metrics ------------------------------------------------------------------------------------


def test_best_is_never_a_nan():
    from gluebox.runs.summary import best_record
    from gluebox.training.checkpoints import is_better

    nan = float("nan")
    records = [{"epoch": 1, "m": nan}, {"epoch": 2, "m": 0.3}, {"epoch": 3, "m": 0.5}, {"epoch": 4, "m": nan}]
    best, nan_epochs = best_record(records, "m")
    assert best["epoch"] == 3 and nan_epochs == [1, 4]
    assert best_record([{"epoch": 1, "m": nan}, {"epoch": 2, "m": nan}], "m")[0]["epoch"] == 2
    assert not is_better(nan, None) and not is_better(nan, 0.1) and is_better(0.1, nan) and is_better(0.2, 0.1)


def test_a_sweep_never_ranks_a_trial_by_a_nan(tmp_path):
    from gluebox.runs.directory import RunDirectory
    from gluebox.sweep.report import read_outcome

    run = RunDirectory(tmp_path / "trial-000")
    run.path.mkdir()
    run.write_metrics([{"epoch": 1, "validation/pearson": float("nan")}, {"epoch": 2, "validation/pearson": 0.4}])
    outcome = read_outcome("trial-000", {}, run.path, "validation/pearson", "max")
    assert outcome.best == 0.4 and outcome.best_epoch == 2


def test_a_nan_main_metric_does_not_freeze_the_best_model(tiny_bert, tmp_path, capsys):
    """STS-B whose validation scores are all equal: Pearson is NaN in every epoch. The best model is
    not frozen at epoch 1: it follows the run, and the summary says why."""
    folder = tmp_path / "STS-B"
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]
    words = "the cat sat on a mat while dogs ran far away from home".split()

    def row(i: int, score: str) -> list[str]:
        return [str(i), "main", "f", "2012", str(i), "s", "s", " ".join(words[: 3 + i % 9]), " ".join(words[i % 5:]), score]

    write_tsv(folder / "train.tsv", header, [row(i, f"{i % 6}.0") for i in range(24)])
    write_tsv(folder / "dev.tsv", header, [row(i, "2.5") for i in range(8)])
    run = tmp_path / "run"
    assert main(train_args(tiny_bert, run, "--task_name", "stsb", "--data_dir", str(folder), "--epochs", "2",
                           "--train_batch_size", "8", "--eval_batch_size", "8", "--max_seq_length", "32")) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["nan_epochs"] == [1, 2] and summary["best_epoch"] == 2
    assert "validation/pearson was NaN in every epoch" in summary["note"] and summary["note"] in out
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["global_step"] == 6  # the last epoch's, not the first's


# best_model/ swap --------------------------------------------------------------------------------

SWAP = """
import os, shutil, sys
from pathlib import Path
import gluebox.training.export as export

target, new_model, kill_at, exchange = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "exchange"
if not exchange:
    export.exchange = lambda a, b: False
calls = []
armed = False


def killing(real):
    def call(*args, **kwargs):
        if armed:
            calls.append(real.__name__)
            if len(calls) == kill_at:
                os._exit(137)  # killed before this step of the swap
        return real(*args, **kwargs)
    return call


os.replace, os.rename, shutil.rmtree = killing(os.replace), killing(os.rename), killing(shutil.rmtree)


def write(folder):
    global armed
    shutil.copytree(new_model, folder, dirs_exist_ok=True)  # as save_pretrained would write it
    armed = True  # from here on every file-system step of the swap may be the last


export.swap_in(target, write, "kept")
print(len(calls))
"""


def save_model(path: Path, source: str, name: str) -> Path:
    """A classifier saved with ``gluebox_generation = name`` in its config."""
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(source, num_labels=2)
    model.config.gluebox_generation = name
    model.save_pretrained(path)
    return path


def generation(folder: Path) -> str:
    """Which model ``folder`` holds ("old" or "new"), loading it as a user would."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(folder)
    return AutoConfig.from_pretrained(folder).gluebox_generation


@pytest.mark.parametrize("way", ["exchange", "two renames"])
def test_a_kill_at_any_step_of_the_best_model_swap_leaves_a_complete_model(tiny_bert, tmp_path, way):
    """The swap is killed (os._exit) before each of its file-system steps in turn, after the new model
    is written beside it: best_model/ always loads. Without an exchange (a file system that has none),
    the kill between the two renames leaves the old model aside, and the next swap puts it back first."""
    import shutil

    old, new = save_model(tmp_path / "old", tiny_bert, "old"), save_model(tmp_path / "new", tiny_bert, "new")

    def prepare(folder: Path) -> Path:
        return Path(shutil.copytree(old, folder / "best_model"))

    def swap(target: Path, kill_at: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", SWAP, str(target), str(new), str(kill_at), way],
                              capture_output=True, text=True, timeout=300)

    done = swap(prepare(tmp_path / "complete"), 0)
    assert done.returncode == 0, done.stderr
    assert generation(tmp_path / "complete" / "best_model") == "new"
    steps = int(done.stdout.split()[-1])
    seen = {}
    for kill_at in range(1, steps + 1):
        target = prepare(tmp_path / f"killed-{kill_at}")
        assert swap(target, kill_at).returncode == 137
        if way == "two renames" and not target.exists():
            # Killed between the renames: the old model waits beside it, and the next swap puts it back first.
            assert (target.parent / ".best_model.old" / "config.json").is_file()
            again = swap(target, 0)
            assert again.returncode == 0, again.stderr
            assert generation(target) == "new" and [p.name for p in target.parent.iterdir()] == ["best_model"]
            seen[kill_at] = "aside"
        else:
            seen[kill_at] = generation(target)  # loads: a complete model is in place
    # The steps after the new folder is written: with an exchange, only removing the old folder (the
    # exchange itself is one system call); without, rename the old aside, rename the new in, remove the old.
    assert seen == ({1: "new"} if way == "exchange" else {1: "old", 2: "aside", 3: "new"})


def test_a_failed_rename_puts_the_old_best_model_back(tiny_bert, tmp_path, monkeypatch):
    """Without an exchange, a failure of the second rename (not a kill) leaves the old model in place."""
    from transformers import BertForSequenceClassification

    import gluebox.training.export as export

    target = tmp_path / "best_model"
    BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).save_pretrained(target)
    before = snapshot(target)
    real = os.replace
    calls = []

    def failing(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        return real(a, b)

    monkeypatch.setattr(export, "exchange", lambda a, b: False)
    monkeypatch.setattr(export.os, "replace", failing)
    with pytest.raises(OSError):
        export.swap_in(target, lambda folder: (folder / "config.json").write_text("{}"), "kept")
    monkeypatch.setattr(export.os, "replace", real)
    assert snapshot(target) == before and [p.name for p in tmp_path.iterdir()] == ["best_model"]


# --help ---------------------------------------------------------------------------------------------


def commands() -> list[str]:
    """Every subcommand of the CLI, as its parser knows them."""
    return sorted(build_parser().commands.choices)


def test_the_command_list_is_the_parsers():
    assert {"train", "evaluate", "predict", "glue", "sweep"} <= set(commands())


@pytest.mark.parametrize("command", ["", *commands()])
def test_every_command_has_help(command):
    """`gluebox --help` and `gluebox COMMAND --help`, as the installed command runs them."""
    argv = [sys.executable, "-m", "gluebox", *([command] if command else []), "--help"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: gluebox{' ' + command if command else ''}") and not result.stderr
