"""Multi-process runs (2 CPU processes, DDP over gloo): one signal to any process stops every
process after one checkpoint, and `--resume` continues it, under Fabric's launcher, under torchrun
and as the first process of a container (`docker stop`), to the same end as an uninterrupted run.

Dropout is on (the default 0.1) and each process draws its own masks, so an identical resumed run
also proves that every process's random generators were put back. Every signal is sent while the
run holds at a step it reported (gluebox.training.pause: every process holds, and each writes its
process id), so nothing depends on the machine's speed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import start_gluebox, train_args, wait_until_paused
from fixtures import write_mrpc
from gluebox.cli import main
from gluebox.training.pause import held_pid

STEPS_PER_EPOCH = 12
"""48 examples in global batches of 4 (2 per process)."""
SETTINGS = ("--train_batch_size", "4", "--eval_batch_size", "4", "--max_seq_length", "64", "--epochs", "2",
            "--warmup_steps", "4", "--learning_rate", "1e-3", "--accelerator", "cpu", "--devices", "2",
            "--num_threads", "1")
FABRIC = ("--strategy", "ddp")
"""Fabric's launcher: the command starts the second process itself."""
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m")
PID_NAMESPACE = ("unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m")
"""Runs gluebox as process 1 of a new PID namespace, as `docker run` without --init runs it."""
WAIT = 300
"""Seconds a step or an exit may take on a busy 2-CPU machine before the test fails."""


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("mrpc"))


def args(model: str, data: Path, run: Path, *extra: str) -> list[str]:
    return train_args(model, run, "--data_dir", str(data), "--task_name", "mrpc", *SETTINGS, *extra)


def finish(command: list[str], runner=None, cwd: Path | None = None) -> str:
    """Run gluebox to its end (exit code 0); its stderr."""
    process = start_gluebox(command, runner=runner, cwd=cwd)
    _, err = process.communicate(timeout=2 * WAIT)
    assert process.returncode == 0, err.decode()[-4000:]
    return err.decode()


@pytest.fixture(scope="module")
def fabric_reference(tiny_bert, mrpc_dir, tmp_path_factory) -> Path:
    """The run under Fabric's launcher, never interrupted."""
    run = tmp_path_factory.mktemp("fabric-reference") / "run"
    finish(args(tiny_bert, mrpc_dir, run, *FABRIC))
    return run


@pytest.fixture(scope="module")
def torchrun_reference(tiny_bert, mrpc_dir, tmp_path_factory) -> Path:
    """The run under torchrun, never interrupted."""
    run = tmp_path_factory.mktemp("torchrun-reference") / "run"
    finish(args(tiny_bert, mrpc_dir, run), runner=TORCHRUN)
    return run


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (from /proc: host process ids, in any PID namespace)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the thread or the process ended meanwhile
            pass
    return children + [grandchild for child in children for grandchild in descendants(child)]


@pytest.fixture
def launched():
    """Start-and-track: whatever a failing test leaves running (a held rank, a launcher) is killed."""
    started: list[subprocess.Popen] = []

    def track(process: subprocess.Popen, pauses: Path) -> subprocess.Popen:
        started.append(process)
        return process

    yield track
    for process in started:
        if process.poll() is None:
            for pid in [*descendants(process.pid), process.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            process.wait()


def status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def checkpoint_step(run: Path) -> int:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def gluebox_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("gluebox:")]


def check_stopped(run: Path, err: str, signum: int, epoch: int, step: int) -> None:
    """One line says it (rank 0's), the run is marked interrupted, its one checkpoint is at ``step``,
    and no gluebox traceback."""
    name = signal.Signals(signum).name
    lines = gluebox_lines(err)
    assert len(lines) == 1, err[-4000:]
    assert lines[0].startswith(f"gluebox: interrupted: {name} at epoch {epoch}, step {step}; checkpoint saved to "), lines
    assert f"gluebox train --resume {run}" in lines[0], lines
    assert "/gluebox/" not in err, err[-4000:]  # no frame of gluebox's in any traceback
    assert status(run)["status"] == "interrupted" and status(run)["signal"] == name
    assert checkpoint_step(run) == step
    assert not (run / "summary.json").exists()


def assert_identical(run: Path, reference: Path, capsys, resumes: int) -> None:
    capsys.readouterr()
    assert main(["compare", str(run), str(reference)]) == 0, capsys.readouterr().out
    assert "identical: 2 epoch(s)" in capsys.readouterr().out
    assert status(run)["status"] == "complete" and status(run)["resumes"] == resumes
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2


def hold(process: subprocess.Popen, pauses: Path, step: int) -> list[int]:
    """Wait until both processes hold after ``step``; their process ids, by rank."""
    wait_until_paused(process, pauses, step, timeout=WAIT, processes=2)
    return [held_pid(pauses, step, rank) for rank in (0, 1)]


def test_fabric_launcher_stops_every_process_on_one_signal_to_any_and_resumes_identically(
        tiny_bert, mrpc_dir, fabric_reference, tmp_path, capsys, launched):
    """SIGTERM to the process the launcher started (rank 1) stops both after one checkpoint: the
    command exits 143 once rank 1 has exited too. Resumed, then stopped again by SIGINT to the
    command (rank 0) in the second epoch, then resumed to its end: identical to the uninterrupted run."""
    run, pauses = tmp_path / "run", tmp_path / "pauses"
    process = launched(start_gluebox(args(tiny_bert, mrpc_dir, run, *FABRIC), (5,), pauses), pauses)
    rank0, rank1 = hold(process, pauses, 5)
    assert rank0 == process.pid and rank1 != rank0 and alive(rank1)
    os.kill(rank1, signal.SIGTERM)
    assert process.wait(timeout=WAIT) == 143
    check_stopped(run, process.stderr.read().decode(), signal.SIGTERM, 1, 5)
    assert not alive(rank1)

    process = launched(start_gluebox(["train", "--resume", str(run)], (STEPS_PER_EPOCH + 5,), pauses), pauses)
    rank0, rank1 = hold(process, pauses, STEPS_PER_EPOCH + 5)
    assert rank0 == process.pid
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=WAIT) == 130
    check_stopped(run, process.stderr.read().decode(), signal.SIGINT, 2, STEPS_PER_EPOCH + 5)
    assert not alive(rank1)

    finish(["train", "--resume", str(run)])
    assert_identical(run, fabric_reference, capsys, resumes=2)


def exit_codes_of_workers(err: str) -> list[int]:
    """The workers' exit codes as torchrun's failure report lists them (``exitcode  : 143 (pid: 123)``)."""
    return [int(code) for code in re.findall(r"exitcode\s+:\s*(-?\d+) \(pid", err)]


def test_torchrun_stops_every_process_on_one_signal_to_any_and_resumes_identically(
        tiny_bert, mrpc_dir, torchrun_reference, tmp_path, capsys, launched):
    """SIGTERM to one worker (rank 1) stops both workers after one checkpoint, each with exit code 143
    (torchrun reports them and exits 1). Resumed under torchrun, then SIGINT to torchrun itself (Ctrl+C
    in its terminal; torchrun forwards it once to each worker): both stop with 130 after one
    checkpoint. Resumed under torchrun to its end: identical to the uninterrupted torchrun run."""
    run, pauses = tmp_path / "run", tmp_path / "pauses"
    process = launched(start_gluebox(args(tiny_bert, mrpc_dir, run), (5,), pauses, runner=TORCHRUN), pauses)
    rank0, rank1 = hold(process, pauses, 5)
    os.kill(rank1, signal.SIGTERM)
    assert process.wait(timeout=WAIT) != 0
    err = process.stderr.read().decode()
    check_stopped(run, err, signal.SIGTERM, 1, 5)
    assert exit_codes_of_workers(err) == [143, 143], err[-4000:]
    assert not alive(rank0) and not alive(rank1)

    process = launched(start_gluebox(["train", "--resume", str(run)], (STEPS_PER_EPOCH + 5,), pauses,
                                     runner=TORCHRUN), pauses)
    rank0, rank1 = hold(process, pauses, STEPS_PER_EPOCH + 5)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=WAIT)
    err = process.stderr.read().decode()
    assert err.count("closing signal SIGINT") == 2, err[-4000:]  # torchrun's one forward to each worker
    check_stopped(run, err, signal.SIGINT, 2, STEPS_PER_EPOCH + 5)
    assert not alive(rank0) and not alive(rank1)

    finish(["train", "--resume", str(run)], runner=TORCHRUN)
    assert_identical(run, torchrun_reference, capsys, resumes=2)


def can_make_pid_namespaces() -> bool:
    try:
        return shutil.which("unshare") is not None and subprocess.run(
            [*PID_NAMESPACE[:4], "true"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not can_make_pid_namespaces(), reason="unshare cannot make a PID namespace here (needs root)")
def test_sigterm_to_process_1_as_docker_stop_sends_it_stops_every_process_and_resumes_identically(
        tiny_bert, mrpc_dir, fabric_reference, tmp_path, capsys, launched):
    """`docker stop` sends SIGTERM to process 1 of the container, and the container ends when that
    process ends. gluebox as process 1 (Fabric's launcher, two processes): one checkpoint, both
    processes end with 143 (rank 1's exit code is checked by rank 0, which would say otherwise), then
    the command. Resumed outside: identical to the uninterrupted run."""
    run, pauses = tmp_path / "run", tmp_path / "pauses"
    process = launched(start_gluebox(args(tiny_bert, mrpc_dir, run, *FABRIC), (5,), pauses, runner=PID_NAMESPACE),
                       pauses)
    assert hold(process, pauses, 5)[0] == 1  # rank 0 is process 1 in its namespace
    (first,) = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    os.kill(int(first), signal.SIGTERM)
    assert process.wait(timeout=WAIT) == 143
    check_stopped(run, process.stderr.read().decode(), signal.SIGTERM, 1, 5)

    finish(["train", "--resume", str(run)])
    assert_identical(run, fabric_reference, capsys, resumes=1)
