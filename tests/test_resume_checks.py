"""What a resume checks: the data files, the software and the machine the run last ran with, and
paths that mean the same files wherever the resume is started from.

The runs are real `gluebox train` processes stopped by SIGTERM while they hold after step 3 (see
gluebox.training.pause). A run "from another machine or software" is one whose environment.json
records other values, as that machine would have written them.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from conftest import start_gluebox, train_args, wait_until_paused
from fixtures import write_mrpc
from gluebox.cli import main

SETTINGS = ("--task_name", "mrpc", "--train_batch_size", "4", "--eval_batch_size", "8", "--max_seq_length", "64",
            "--epochs", "2", "--warmup_steps", "4", "--learning_rate", "1e-3")


def interrupted(command: list[str], pauses: Path, cwd: Path | None = None) -> None:
    """Run `gluebox COMMAND` until it holds after step 3, then stop it with SIGTERM (exit code 143)."""
    process = start_gluebox(command, (3,), pauses, cwd=cwd)
    wait_until_paused(process, pauses, 3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143, process.stderr.read().decode()


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory) -> Path:
    return write_mrpc(tmp_path_factory.mktemp("mrpc"))


@pytest.fixture(scope="module")
def reference(tiny_bert, mrpc_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(train_args(tiny_bert, run, "--data_dir", str(mrpc_dir), *SETTINGS)) == 0
    return run


@pytest.fixture(scope="module")
def stopped(tiny_bert, mrpc_dir, tmp_path_factory) -> Path:
    """A run stopped at step 3; tests resume copies of it."""
    folder = tmp_path_factory.mktemp("stopped")
    interrupted(train_args(tiny_bert, folder / "run", "--data_dir", str(mrpc_dir), *SETTINGS), folder / "pauses")
    return folder / "run"


def files_of(run: Path) -> list[tuple[Path, bytes]]:
    return sorted((path, path.read_bytes()) for path in run.rglob("*") if path.is_file())


def refused(capsys, argv: list[str], *phrases: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err, err
    return err


def test_edited_data_stops_the_resume_and_accept_changes_goes_on_records_it_and_compare_names_it(
        tiny_bert, mrpc_dir, reference, tmp_path, capsys):
    data = Path(shutil.copytree(mrpc_dir, tmp_path / "data"))
    run = tmp_path / "run"
    interrupted(train_args(tiny_bert, run, "--data_dir", str(data), *SETTINGS), tmp_path / "pauses")
    first = json.loads((run / "environment.json").read_text())
    dev = data / "dev.tsv"
    assert first["data"]["validation"]["file"] == str(dev) and first["data"]["validation"]["bytes"] == dev.stat().st_size

    lines = dev.read_text().splitlines()
    lines[1] = ("0" if lines[1].startswith("1") else "1") + lines[1][1:]  # one label flipped
    dev.write_text("\n".join(lines) + "\n")
    before = files_of(run)
    refused(capsys, ["train", "--resume", str(run)],
            f"cannot resume {run}: the validation data ({dev}) changed since the run last ran",
            "pass --accept_changes to resume anyway")
    assert files_of(run) == before, "a refused resume wrote something"

    assert main(["train", "--resume", str(run), "--accept_changes"]) == 0
    assert f"resuming despite changes (--accept_changes): the validation data ({dev}) changed" in capsys.readouterr().out
    environment = json.loads((run / "environment.json").read_text())
    assert {k: v for k, v in environment.items() if k != "resumes"} == first  # the first process's, kept
    (resume,) = environment["resumes"]
    assert resume["accepted_changes"] == [f"the validation data ({dev}) changed"]
    assert resume["data"]["validation"]["sha256"] != first["data"]["validation"]["sha256"]
    assert "accept_changes: false" in (run / "config.yaml").read_text()  # never kept for the next resume

    capsys.readouterr()
    assert main(["compare", str(run), str(reference)]) == 1
    assert f"{run} was resumed despite changes (the validation data ({dev}) changed)" in capsys.readouterr().out


@pytest.mark.parametrize("recorded, phrase", [
    ({"packages": {"torch": "2.0.0"}}, "torch 2.0.0 is now {torch}"),
    ({"packages": {"transformers": "4.30.0"}}, "transformers 4.30.0 is now {transformers}"),
    ({"packages": {"gluebox": "0.0.1"}}, "gluebox 0.0.1 is now {gluebox}"),
    ({"torch_cpu_capability": "AMX"}, "the CPU's instruction set AMX is now {capability}"),
    ({"device": "cuda", "gpu": "NVIDIA H100 80GB HBM3"}, "the accelerator NVIDIA H100 80GB HBM3 is now cpu"),
])
def test_other_software_cpu_or_accelerator_stops_the_resume_in_one_line(stopped, tmp_path, capsys, recorded, phrase):
    """As if the run had started on another machine or with other packages (its environment.json says so)."""
    run = Path(shutil.copytree(stopped, tmp_path / "run"))
    environment = json.loads((run / "environment.json").read_text())
    now = {"capability": environment["torch_cpu_capability"], **environment["packages"]}
    for key, value in recorded.items():
        environment[key] = environment[key] | value if isinstance(value, dict) else value
    (run / "environment.json").write_text(json.dumps(environment))
    before = files_of(run)
    refused(capsys, ["train", "--resume", str(run)], f"cannot resume {run}: {phrase.format(**now)} since the run last ran")
    assert files_of(run) == before


def test_a_resume_is_checked_against_the_process_the_run_last_ran_in(stopped, reference, tmp_path, capsys):
    """A change accepted by an earlier resume is not asked about again: the last resume's description counts."""
    run = Path(shutil.copytree(stopped, tmp_path / "run"))
    environment = json.loads((run / "environment.json").read_text())
    current = dict(environment)
    environment["packages"] = environment["packages"] | {"torch": "2.0.0"}
    environment["resumes"] = [current | {"resumed": "2026-01-01T00:00:00+0000",
                                         "accepted_changes": [f"torch 2.0.0 is now {current['packages']['torch']}"]}]
    (run / "environment.json").write_text(json.dumps(environment))
    assert main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()
    assert main(["compare", str(run), str(reference)]) == 0
    out = capsys.readouterr().out
    assert "identical: 2 epoch(s)" in out and f"note: {run} was resumed despite changes (torch 2.0.0 is now" in out
    assert len(json.loads((run / "environment.json").read_text())["resumes"]) == 2


def test_relative_paths_mean_the_folder_the_run_started_in(tiny_bert, mrpc_dir, reference, tmp_path, capsys):
    """--data_dir data, --checkpoint_dir ckpts and --output_dir run given relative, in folder `start`; the
    resume runs in another folder and still reads and writes the same files."""
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    shutil.copytree(mrpc_dir, start / "data")
    elsewhere.mkdir()
    interrupted(train_args(tiny_bert, Path("run"), "--data_dir", "data", "--checkpoint_dir", "ckpts", *SETTINGS),
                tmp_path / "pauses", cwd=start)
    saved = (start / "run" / "config.yaml").read_text()
    assert f"data_dir: {start / 'data'}\n" in saved and f"checkpoint_dir: {start / 'ckpts'}\n" in saved
    assert f"output_dir: {start / 'run'}\n" in saved

    process = start_gluebox(["train", "--resume", "../start/run"], cwd=elsewhere)
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()
    assert list(elsewhere.iterdir()) == []
    assert (start / "ckpts" / "best.ckpt").exists()
    assert main(["compare", str(start / "run"), str(reference)]) == 0, capsys.readouterr().out


def test_accept_changes_without_resume_is_one_line(tiny_bert, tmp_path, capsys):
    refused(capsys, train_args(tiny_bert, tmp_path / "run", "--accept_changes"), "--accept_changes only applies with --resume")
    assert not (tmp_path / "run").exists()


def description(vendor: str, capability: str, isa: list[str], threads: int, torch: str = "2.13.0", **extra) -> dict:
    return {"cpu_vendor": vendor, "torch_cpu_capability": capability, "cpu_isa": isa, "torch_threads": threads,
            "packages": {"torch": torch, "transformers": "5.0.0", "gluebox": "0.1.0", "numpy": "2.0"},
            "variables": {"MKL_CBWR": None, "OMP_NUM_THREADS": None}, "device": "cpu",
            "data": {"train": {"file": "/d/train.tsv", "bytes": 10, "sha256": "a"}}} | extra


INTEL = description("GenuineIntel", "AVX512", ["sse4_2", "avx", "avx2", "fma", "avx512f", "amx_bf16", "amx_tile"], 2)
AMD = description("AuthenticAMD", "AVX2", ["sse4_2", "avx", "avx2", "fma"], 2)


def test_which_changes_count_in_fast_and_portable_mode():
    """Another CPU counts in fast mode only (portable runs give the same numbers on every AVX2 CPU);
    versions, the accelerator and the data count in both; thread variables alone do not."""
    from gluebox.runs.environment import changes

    assert changes(INTEL, AMD, "fast") == ["the CPU vendor GenuineIntel is now AuthenticAMD",
                                           "the CPU's instruction set AVX512 is now AVX2"]
    assert changes(INTEL, AMD, "portable") == []
    without_amx = INTEL | {"cpu_isa": ["sse4_2", "avx", "avx2", "fma", "avx512f"]}
    assert changes(INTEL, without_amx, "fast") == [
        "the CPU's instruction set extensions sse4_2 avx avx2 fma avx512f amx_bf16 amx_tile is now sse4_2 avx avx2 fma avx512f"]
    assert changes(INTEL, INTEL | {"torch_threads": 1}, "fast") == ["torch's thread count 2 is now 1"]
    assert changes(INTEL, INTEL | {"variables": {"MKL_CBWR": "AVX2", "OMP_NUM_THREADS": "1"}}, "fast") == [
        "MKL_CBWR none is now AVX2"]
    assert changes(INTEL, INTEL | {"variables": {"MKL_CBWR": None, "OMP_NUM_THREADS": "1"}}, "fast") == []
    newer = description("AuthenticAMD", "AVX2", AMD["cpu_isa"], 2, torch="2.14.0", gpu="NVIDIA L4", device="cuda")
    newer["data"] = {"train": {"file": "/elsewhere/train.tsv", "bytes": 11, "sha256": "b"}}
    assert changes(AMD, newer, "portable") == ["the train data (/elsewhere/train.tsv) changed", "torch 2.13.0 is now 2.14.0",
                                               "the accelerator cpu is now NVIDIA L4"]
    moved = AMD | {"data": {"train": {"file": "/elsewhere/train.tsv", "bytes": 10, "sha256": "a"}}}
    assert changes(AMD, moved, "fast") == []  # the same bytes, moved
    assert changes({"device": "cpu"}, AMD, "fast") == []  # what an older run did not record is not compared


def test_this_machine_described_twice_has_no_changes():
    from gluebox.runs.environment import changes, describe

    now = describe("cpu")
    assert changes(now, describe("cpu"), "fast") == []
    assert now["torch_cpu_capability"] and now["packages"]["torch"] and now["packages"]["gluebox"]
