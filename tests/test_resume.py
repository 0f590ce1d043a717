"""Interrupted runs: real signals to a real `gluebox train` process, then `--resume` and `gluebox compare`.

Every run here has dropout on (the default 0.1), so an identical resumed run also proves that
the random generators were put back where they were. The uninterrupted reference run and the
interrupted ones share one configuration: 48 examples, batches of 4, 2 epochs of 12 steps.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import start_gluebox, train_args, wait_until_paused
from fixtures import write_mrpc
from gluebox.cli import main

STEPS_PER_EPOCH = 12
EPOCHS = 2
SETTINGS = ("--train_batch_size", "4", "--eval_batch_size", "8", "--max_seq_length", "64", "--epochs", str(EPOCHS),
            "--warmup_steps", "4", "--learning_rate", "1e-3")
"""Every signal or kill below is sent while the run holds at a step it reported (gluebox.training.pause)."""


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("mrpc"))


def args(tiny_bert, mrpc_dir, output: Path, *extra: str) -> list[str]:
    return train_args(tiny_bert, output, "--data_dir", str(mrpc_dir), "--task_name", "mrpc", *SETTINGS, *extra)


@pytest.fixture(scope="module")
def reference(tiny_bert, mrpc_dir, tmp_path_factory):
    """The same run, never interrupted."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(args(tiny_bert, mrpc_dir, run)) == 0
    return run


def status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def results_of(path: Path) -> list[dict]:
    """The rows of a CSV file without the measurement (``perf/``) columns."""
    with open(path, newline="") as file:
        return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in csv.DictReader(file)]


def checkpoint_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def assert_identical(run: Path, reference: Path, capsys) -> None:
    """`gluebox compare` says identical, and the per-step and per-epoch files agree but for timings."""
    capsys.readouterr()
    assert main(["compare", str(run), str(reference)]) == 0, capsys.readouterr().out
    assert f"identical: {EPOCHS} epoch(s)" in capsys.readouterr().out
    assert results_of(run / "steps" / "metrics.csv") == results_of(reference / "steps" / "metrics.csv")
    assert len(results_of(run / "steps" / "metrics.csv")) == EPOCHS * STEPS_PER_EPOCH
    assert results_of(run / "metrics.csv") == results_of(reference / "metrics.csv")
    assert status(run)["status"] == "complete" and status(run)["resumes"] >= 1


def interrupt(run: Path, command: list[str], signum: int, pause_at: int) -> tuple[int, float, str]:
    """Start `gluebox train`, send ``signum`` while it holds after step ``pause_at``; exit code,
    seconds to exit, stderr."""
    process = start_gluebox(command, (pause_at,), run.parent / "pauses")
    wait_until_paused(process, run.parent / "pauses", pause_at)
    sent = time.monotonic()
    process.send_signal(signum)
    rc = process.wait(timeout=60)
    return rc, time.monotonic() - sent, process.stderr.read().decode()


@pytest.fixture(scope="module")
def sigterm_run(tiny_bert, mrpc_dir, tmp_path_factory):
    """A run whose first checkpoint comes from the minutes timer (every 60 ms), stopped by SIGTERM
    two steps later, and a copy of it made at once (for the full-disk test; the original is
    resumed in place).

    The run holds after step 3 while 0.1 s passes (it is paused, so nothing races: this only
    lets the timer come due), then after step 5, where it gets the signal."""
    folder = tmp_path_factory.mktemp("sigterm")
    run, pauses = folder / "run", folder / "pauses"
    process = start_gluebox(args(tiny_bert, mrpc_dir, run, "--checkpoint_every_minutes", "0.001"), (3, 5), pauses)
    held = wait_until_paused(process, pauses, 3)
    time.sleep(0.1)  # the run is held: this races nothing, it only lets the 60 ms timer come due
    held.unlink()
    wait_until_paused(process, pauses, 5)
    timer_step = checkpoint_step(run / "checkpoints" / "last.ckpt")
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    rc = process.wait(timeout=60)
    outcome = rc, time.monotonic() - sent, process.stderr.read().decode()
    shutil.copytree(run, folder / "spare")
    return run, outcome, folder / "spare", timer_step


def check_interrupted(run: Path, outcome: tuple[int, float, str], signum: int) -> None:
    rc, seconds, err = outcome
    assert rc == 128 + signum, err
    assert seconds < 10, seconds
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"gluebox: interrupted: {signal.Signals(signum).name} at epoch 1, step "), line
    assert line.endswith(f"resume with `gluebox train --resume {run}`"), line
    assert status(run)["status"] == "interrupted" and status(run)["signal"] == signal.Signals(signum).name
    assert not (run / "summary.json").exists()
    assert 0 < checkpoint_step(run / "checkpoints" / "last.ckpt") < STEPS_PER_EPOCH  # loads; mid-epoch


def test_sigterm_saves_a_checkpoint_stops_within_seconds_and_resumes_identically(sigterm_run, reference, tmp_path,
                                                                                  capsys):
    """SIGTERM (docker stop) stops at the next batch end with a checkpoint and exit code 143;
    the resumed run ends identical to the uninterrupted one."""
    run, outcome, _, timer_step = sigterm_run
    assert timer_step in (3, 4), timer_step  # the timer saved at the end of step 3 (or 4), before any signal
    check_interrupted(run, outcome, signal.SIGTERM)
    assert checkpoint_step(run / "checkpoints" / "last.ckpt") == 5
    assert main(["train", "--resume", str(run)]) == 0
    assert_identical(run, reference, capsys)


def test_sigint_saves_a_checkpoint_and_stops_within_seconds(tiny_bert, mrpc_dir, reference, tmp_path, capsys):
    """Ctrl+C does the same, with exit code 130."""
    run = tmp_path / "run"
    outcome = interrupt(run, args(tiny_bert, mrpc_dir, run, "--checkpoint_every_n_steps", "2"), signal.SIGINT, 3)
    check_interrupted(run, outcome, signal.SIGINT)
    assert checkpoint_step(run / "checkpoints" / "last.ckpt") == 3
    assert main(["train", "--resume", str(run)]) == 0
    assert_identical(run, reference, capsys)


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")
def test_a_second_stop_signal_stops_at_once_and_handlers_are_put_back():
    """The first signal only asks for a stop at the batch end; a second one (any of the two)
    raises at once with its own exit code. Uninstalling puts back the handlers found."""
    from gluebox.errors import RunInterrupted
    from gluebox.training.signals import StopRequest

    found = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    stop = StopRequest()
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.requested and stop.name == "SIGTERM"
        with pytest.raises(RunInterrupted) as error:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        assert error.value.exit_code == 130
        assert "second SIGINT" in str(error.value) and "last checkpoint is kept" in str(error.value)
    finally:
        stop.uninstall()
    assert {signum: signal.getsignal(signum) for signum in found} == found


@pytest.mark.parametrize("where", ["epoch_end", "mid_epoch"])
def test_resume_after_sigkill_is_identical(tiny_bert, mrpc_dir, reference, tmp_path, capsys, where):
    """A SIGKILL leaves the last checkpoint intact; resuming from it cuts back what the killed run
    wrote after it and ends identical to the uninterrupted run, wherever the checkpoint was.

    epoch_end: only the epoch-end checkpoint exists (the timer's 5 minutes never come), killed
    while it holds after step 16, in the second epoch. mid_epoch: a checkpoint every 5 steps
    (steps 5, 10, the epoch end at 12, then 17), killed while it holds after step 20, in the
    middle of the second epoch (whose batch order differs from the first's).
    """
    run = tmp_path / "run"
    every = ("--checkpoint_every_n_steps", "5") if where == "mid_epoch" else ()
    pause_at = 16 if where == "epoch_end" else 20
    process = start_gluebox(args(tiny_bert, mrpc_dir, run, *every), (pause_at,), tmp_path / "pauses")
    wait_until_paused(process, tmp_path / "pauses", pause_at)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert status(run)["status"] == "running"
    step = checkpoint_step(run / "checkpoints" / "last.ckpt")  # loads: the save was all or nothing
    assert step == STEPS_PER_EPOCH if where == "epoch_end" else STEPS_PER_EPOCH < step < pause_at, step

    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0, capsys.readouterr().err
    assert_identical(run, reference, capsys)


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(sigterm_run, reference, tmp_path, capsys):
    """`ulimit -f` makes every write past 1 MB fail with EFBIG, as a full disk fails with ENOSPC:
    one line, exit 2, and the previous last.ckpt is untouched and loads. Resumed with a
    --checkpoint_dir that has room, the run still ends identical to the uninterrupted one."""
    run = sigterm_run[2]
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    assert len(before) > 2**20

    def small_files_only():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))

    process = start_gluebox(["train", "--resume", str(run), "--checkpoint_every_n_steps", "1"], preexec_fn=small_files_only)
    rc = process.wait(timeout=120)
    err = process.stderr.read().decode()
    assert rc == 2, err
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert err.startswith(f"gluebox: error: no space left on device while saving {last}"), err
    assert "the previous checkpoint is kept" in err
    assert last.read_bytes() == before
    assert checkpoint_step(last) > 0
    assert not list(last.parent.glob(".*.tmp")), "the half-written temp file was removed"
    assert status(run)["status"] == "failed"

    roomy = tmp_path / "roomy"
    assert main(["train", "--resume", str(run), "--checkpoint_dir", str(roomy)]) == 0
    assert_identical(run, reference, capsys)
    assert checkpoint_step(roomy / "last.ckpt") == EPOCHS * STEPS_PER_EPOCH and (roomy / "best.ckpt").exists()
    assert f"checkpoint_dir: {roomy}" in (run / "config.yaml").read_text()


# Refusals ---------------------------------------------------------------------------------------


def refused(capsys, argv: list[str], phrase: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert phrase in err, err
    return err


def test_resume_refusals(tiny_bert, mrpc_dir, reference, tmp_path, capsys):
    refused(capsys, ["train", "--resume", str(tmp_path / "nowhere")], "no such run directory")
    refused(capsys, ["train", "--resume", str(reference)], "the run is complete")
    (tmp_path / "plain").mkdir()
    refused(capsys, ["train", "--resume", str(tmp_path / "plain")], "not a gluebox run directory")

    unfinished = tmp_path / "unfinished"
    shutil.copytree(reference, unfinished)
    (unfinished / "summary.json").unlink()
    data = status(unfinished) | {"status": "interrupted"}
    (unfinished / "status.json").write_text(json.dumps(data))
    before = sorted((p, p.stat().st_mtime_ns) for p in unfinished.rglob("*"))
    refused(capsys, ["train", "--resume", str(unfinished), "--learning_rate", "0.5"],
            "--learning_rate 0.5 would change the run (it has 0.001)")
    refused(capsys, ["train", "--resume", str(unfinished), "--overwrite"], "use one of them")
    refused(capsys, ["train", "--resume", str(unfinished), "--output_dir", str(tmp_path / "elsewhere")],
            "drop --output_dir")
    refused(capsys, ["train", "--resume", str(unfinished), "--num_threads", "1"],
            "--num_threads 1 would change the run (it has the default)")
    shutil.rmtree(unfinished / "checkpoints")
    refused(capsys, ["train", "--resume", str(unfinished)], "no checkpoint at")
    assert sorted((p, p.stat().st_mtime_ns) for p in unfinished.rglob("*") if "checkpoints" not in p.parts) == \
        [entry for entry in before if "checkpoints" not in entry[0].parts]

    running = tmp_path / "running"
    shutil.copytree(reference, running)
    (running / "summary.json").unlink()
    # A live process whose command line says gluebox stands in for a run still in progress.
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "gluebox"])
    deadline = time.time() + 30
    while b"gluebox" not in Path(f"/proc/{process.pid}/cmdline").read_bytes() and time.time() < deadline:
        time.sleep(0.01)  # empty while the new program is still being loaded
    try:
        (running / "status.json").write_text(json.dumps({"status": "running", "pid": process.pid}))
        refused(capsys, ["train", "--resume", str(running)], f"still running (process {process.pid})")
    finally:
        process.kill()
        process.wait()
