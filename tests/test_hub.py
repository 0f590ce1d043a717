"""The first command's download path, against a local stand-in for the Hugging Face Hub.

``gluebox train --task_name mrpc --model_name_or_path distilbert-base-uncased`` runs as a user
runs it, in its own process, with a fresh ``HF_HOME`` and ``HF_ENDPOINT`` pointing at
:class:`hub_server.HubStandIn`, which serves ``distilbert-base-uncased`` and ``nyu-mll/glue`` in
the Hub's layout and fails the test on any request it does not understand.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import minilm_path
from hub_server import HubStandIn, build_distilbert, build_glue

MODEL = "distilbert-base-uncased"
QUICK = ["--max_train_samples", "8", "--max_eval_samples", "8", "--epochs", "1", "--wandb_mode", "disabled",
         "--no-progress_bar"]
"""Added to the README's commands to keep them short; none of them changes what is downloaded."""

FIRST_COMMAND = ["train", "--task_name", "mrpc", "--model_name_or_path", MODEL, *QUICK]
"""The README's first command, as written, plus :data:`QUICK`."""

CACHE_COMMAND = ["cache", "--model_name_or_path", MODEL, "--task_name", "mrpc"]
"""docs/hub.md's `gluebox cache` command, as written."""


class ExtraStderrLines(AssertionError):
    """A failed run wrote more than its one error line to stderr."""


@pytest.fixture(scope="session")
def hub_repos(tmp_path_factory, shared_glue):
    """The stand-in's repositories, made once per session: random DistilBERT weights, real GLUE rows."""
    folder = tmp_path_factory.mktemp("hub")
    model = build_distilbert(folder / "distilbert-base-uncased", minilm_path())
    glue, infos = build_glue(folder / "glue", shared_glue)
    yield [model, glue], infos
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _remove_downloads_and_runs(tmp_path):
    """Each test writes over 1.5 GB (a hub cache, run directories with checkpoints): not kept."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def hub(hub_repos):
    """A running stand-in; the test fails if it was asked for anything it does not understand."""
    repos, infos = hub_repos
    with HubStandIn(repos, infos) as server:
        yield server
    server.check()


def gluebox(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m gluebox ARGS`` in a new process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "gluebox", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def completed_run(cwd: Path) -> dict:
    """The summary of the one run directory a `gluebox train` without --output_dir wrote under ``cwd``."""
    (summary,) = (cwd / "runs").glob("*/summary.json")
    return json.loads(summary.read_text())


def error_line(result: subprocess.CompletedProcess) -> str:
    """The run failed as gluebox fails on bad input: exit code 2, no traceback, its error line last."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("gluebox: error: "), result.stderr
    return lines[-1]


def only_error_line(result: subprocess.CompletedProcess) -> None:
    """Nothing on stderr before the error line."""
    extra = result.stderr.strip().splitlines()[:-1]
    if extra:
        raise ExtraStderrLines("stderr has lines before the error line:\n" + "\n".join(extra))


def test_first_command_downloads_the_model_and_data_and_trains(hub, tmp_path):
    result = gluebox(FIRST_COMMAND, hub.env(tmp_path / "hf"), tmp_path)

    hub.check()
    assert result.returncode == 0, result.stderr
    summary = completed_run(tmp_path)
    assert summary["status"] == "complete"
    assert summary["model"] == MODEL and summary["task"] == "mrpc"
    assert summary["train_examples"] == 8 and summary["final"]["validation/examples"] == 8
    for name in ("config.json", "model.safetensors", "tokenizer.json", "mrpc/train-00000-of-00001.parquet",
                 "mrpc/validation-00000-of-00001.parquet"):
        assert hub.fetched(name), f"{name} was not downloaded: " + "\n".join(hub.requests)
    assert not hub.fetched("rte/train-00000-of-00001.parquet")


def test_cache_then_train_offline_with_the_hub_gone(hub, tmp_path):
    hf_home = tmp_path / "hf"
    cached = gluebox(CACHE_COMMAND, hub.env(hf_home), tmp_path)
    hub.check()
    assert cached.returncode == 0, cached.stderr
    assert "data ready in the datasets cache: train 3668, validation 408, test 1725" in cached.stdout
    hub.stop()

    offline = gluebox(["train", "--task_name", "mrpc", *QUICK], hub.env(hf_home, offline=True), tmp_path)

    assert offline.returncode == 0, offline.stderr
    summary = completed_run(tmp_path)
    assert summary["status"] == "complete" and summary["model"] == MODEL
    assert summary["train_examples"] == 8
    (environment,) = (tmp_path / "runs").glob("*/environment.json")
    data = json.loads(environment.read_text())["data"]  # what a resume compares: the splits' fingerprints
    assert {split: (data[split]["dataset"], data[split]["split"]) for split in data} == {
        "train": ("nyu-mll/glue/mrpc", "train"), "validation": ("nyu-mll/glue/mrpc", "validation")}
    assert data["train"]["fingerprint"] and data["train"]["fingerprint"] != data["validation"]["fingerprint"]


def test_hub_failures_are_one_line_errors_and_leave_the_cache_usable(hub, hub_repos, tmp_path):
    """A model id the hub lacks, a config the dataset lacks, the hub going away halfway through
    model.safetensors: each is exit code 2 with one line on stderr; then, with the hub back,
    `gluebox cache` (the command the error names) works on the cache those failures left
    (one fresh HF_HOME for the whole story)."""
    hf_home = tmp_path / "hf"
    typo = gluebox(["train", "--task_name", "mrpc", "--model_name_or_path", "distilbert-base-uncasd", *QUICK],
                   hub.env(hf_home), tmp_path)
    hub.check()
    line = error_line(typo)
    assert "'distilbert-base-uncasd'" in line and "no such model" in line
    assert len(typo.stderr.strip().splitlines()) == 1, typo.stderr

    # cola is on the real hub; the stand-in's card lists only the configs it serves: here cola is one the hub lacks
    missing = gluebox(["train", "--task_name", "cola", "--model_name_or_path", MODEL, *QUICK], hub.env(hf_home),
                      tmp_path)
    hub.check()
    line = error_line(missing)
    assert "nyu-mll/glue/cola" in line and "'cola' not found" in line
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr

    hub.go_away_during("model.safetensors")
    cut = gluebox(FIRST_COMMAND, hub.env(hf_home), tmp_path)
    hub.check()
    assert hub.went_away.is_set()
    line = error_line(cut)
    assert f"'{MODEL}'" in line and "gluebox cache" in line
    assert not (tmp_path / "runs").exists()

    with HubStandIn(*hub_repos) as back:  # the command the error line names
        rerun = gluebox(CACHE_COMMAND, back.env(hf_home), tmp_path)
        back.check()
        assert rerun.returncode == 0, rerun.stderr
        assert "data ready in the datasets cache: train 3668, validation 408, test 1725" in rerun.stdout
        assert back.fetched("model.safetensors")
        assert not back.fetched("config.json"), "the failed runs' downloads were not kept"
    only_error_line(cut)


def test_the_stand_in_refuses_and_records_what_it_does_not_understand(hub, tmp_path):
    """The safety net of the tests above: an unknown request is a 501 that names it and fails
    check(); through the proxy variables of env(), requests to any host reach the stand-in."""
    import urllib.error
    import urllib.request

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as refused:
        direct.open(f"{hub.endpoint}/api/models/{MODEL}/something-new", timeout=30)
    assert refused.value.code == 501
    assert f"/api/models/{MODEL}/something-new" in refused.value.read().decode()

    # huggingface_hub's own HTTP session, in a process with the stand-in's environment
    client = ("from huggingface_hub.utils import get_session\n"
              "print(get_session().get('http://elsewhere.invalid/new-api').status_code)\n"
              "try:\n    get_session().get('https://huggingface.co/api/new-api')\n"
              "except Exception as error:\n    print(type(error).__name__)\n")
    result = subprocess.run([sys.executable, "-c", client], env=hub.env(tmp_path / "hf"), capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.split() == ["501", "ProxyError"], result.stderr
    assert hub.not_understood == [f"GET {hub.endpoint}/api/models/{MODEL}/something-new",
                                  "GET http://elsewhere.invalid/new-api", "CONNECT huggingface.co:443"]
    with pytest.raises(AssertionError, match="something-new"):
        hub.check()
    hub.not_understood.clear()
