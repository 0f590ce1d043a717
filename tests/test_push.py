"""`gluebox push RUN REPO_ID`, against the local Hub stand-in (:class:`hub_server.HubStandIn`).

Runs are trained here (a tiny BERT, one epoch of 32 MRPC-layout rows); each push runs in its own
process as a user runs it, with the stand-in as ``HF_ENDPOINT``, the token in ``HF_TOKEN`` or in the
file `hf auth login` writes, and no other HF setting of this process. The pushed files are read
back through huggingface_hub's client and compared byte for byte, and the stand-in fails any test
in which it was asked something it does not understand.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import train_args
from fixtures import write_mrpc
from gluebox.cli import main
from hub_server import Account, HubStandIn, Repo

TOKEN = "hf_AlIcEsEcReTwRiTeToKeN0123456789"
"""alice's token: a member of gluebox-org."""
ACCOUNTS = {TOKEN: Account("alice", ("gluebox-org",))}


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("mrpc"), train_rows=32, dev_rows=16)


def trained(tiny_bert: str, mrpc_dir: Path, output: Path, *extra: str) -> Path:
    assert main(train_args(tiny_bert, output, "--data_dir", str(mrpc_dir), "--task_name", "mrpc", "--epochs", "1",
                           "--train_batch_size", "8", "--max_seq_length", "64", *extra)) == 0
    return output


@pytest.fixture(scope="module")
def full_run(tiny_bert, mrpc_dir, tmp_path_factory) -> Path:
    return trained(tiny_bert, mrpc_dir, tmp_path_factory.mktemp("full") / "run")


@pytest.fixture(scope="module")
def lora_run(tiny_bert, mrpc_dir, tmp_path_factory) -> Path:
    return trained(tiny_bert, mrpc_dir, tmp_path_factory.mktemp("lora") / "run", "--peft", "lora")


@pytest.fixture
def hub():
    """A running stand-in with alice's and bob's accounts, and bob's public bob/shared-model."""
    with HubStandIn([Repo("model", "bob/shared-model")], accounts=ACCOUNTS) as server:
        yield server
    server.check()


def user_env(hub: HubStandIn, home: Path, token: str | None = TOKEN) -> dict[str, str]:
    """A user's environment pointed at the stand-in: a fresh HF_HOME, and ``token`` in HF_TOKEN."""
    return hub.env(home) | ({"HF_TOKEN": token} if token is not None else {})


def gluebox(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gluebox", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def client(code: str, env: dict[str, str], cwd: Path) -> str:
    """Run ``code`` with huggingface_hub (and peft) in a process with ``env``; its stdout."""
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def downloaded(repo_id: str, env: dict[str, str], cwd: Path) -> Path:
    """The repository's snapshot, downloaded through huggingface_hub's client."""
    return Path(client(f"from huggingface_hub import snapshot_download\nprint(snapshot_download({repo_id!r}))",
                       env, cwd).strip())


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


def error_line(result: subprocess.CompletedProcess) -> str:
    """Exit code 2, no traceback, one line on stderr."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gluebox: error: "), result.stderr
    return lines[0]


def assert_token_nowhere(token: str, outputs: list[str], *folders: Path, besides: tuple[Path, ...] = ()) -> None:
    """``token`` is in no output and in no file under ``folders`` (but the files ``besides``)."""
    for output in outputs:
        assert token not in output
    checked = 0
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and path not in besides:
                assert token.encode() not in path.read_bytes(), path
                checked += 1
    assert checked


def logits(model_dir: Path, mrpc_dir: Path) -> torch.Tensor:
    """The validation rows' logits of the model in ``model_dir``, loaded as a user loads it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = [line.split("\t") for line in (mrpc_dir / "dev.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    inputs = tokenizer([r[3] for r in rows], [r[4] for r in rows], truncation=True, max_length=64, padding=True,
                       return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


# Round trips ---------------------------------------------------------------------------------------


def test_push_then_download_gives_the_run_s_best_model_byte_for_byte(hub, full_run, mrpc_dir, tmp_path):
    """A full fine-tuning run pushed to NAME (alice's account, public): the repository holds best_model/'s
    files (the model card as its README.md) and the Hub's .gitattributes; downloaded through the client,
    every file is the run's byte for byte and the model predicts what best_model/ predicts. The token
    went to the Hub and nowhere else. Pushing again changes nothing."""
    home, work = tmp_path / "hf", tmp_path / "work"
    work.mkdir()
    env = user_env(hub, home)
    result = gluebox(["push", str(full_run), "tiny-mrpc"], env, work)

    assert result.returncode == 0, result.stderr
    assert f"pushed to {hub.endpoint}/alice/tiny-mrpc at commit" in result.stdout
    assert 'from_pretrained("alice/tiny-mrpc")' in result.stdout
    repo = hub.repo("alice/tiny-mrpc")
    assert not repo.private and repo.commits == ["initial commit", "gluebox push: run"]
    assert repo.files["model.safetensors"].lfs and not repo.files["config.json"].lfs  # both upload paths taken
    local = files_of(full_run / "best_model")
    assert set(local) >= {"README.md", "config.json", "model.safetensors", "tokenizer.json"}

    snapshot = downloaded("alice/tiny-mrpc", env, work)
    remote = files_of(snapshot)
    assert set(remote) == set(local) | {".gitattributes"}
    assert all(remote[name] == content for name, content in local.items())
    assert torch.equal(logits(snapshot, mrpc_dir), logits(full_run / "best_model", mrpc_dir))

    assert f"Bearer {TOKEN}" in hub.authorizations
    assert_token_nowhere(TOKEN, [result.stdout, result.stderr], home, work, full_run)

    again = gluebox(["push", str(full_run), "alice/tiny-mrpc"], env, work)
    assert again.returncode == 0, again.stderr
    assert repo.commits == ["initial commit", "gluebox push: run"]


def test_lora_run_with_the_stored_token_goes_to_a_private_organization_repository(hub, lora_run, tiny_bert, tmp_path):
    """A LoRA run, the token in HF_HOME/token (as `hf auth login` stores it), --private, an
    organization's namespace: best_model/ at the root and best_adapter/ under adapter/, byte for byte;
    the repository is private (an anonymous download is refused), and the adapter loads with peft
    from the Hub (subfolder adapter) on the base model, giving the merged model's logits."""
    home, work = tmp_path / "hf", tmp_path / "work"
    work.mkdir()
    home.mkdir()
    (home / "token").write_text(TOKEN)
    env = user_env(hub, home, token=None)
    result = gluebox(["push", str(lora_run), "gluebox-org/tiny-mrpc-lora", "--private"], env, work)

    assert result.returncode == 0, result.stderr
    assert "(private)" in result.stdout and 'subfolder="adapter"' in result.stdout
    assert hub.repo("gluebox-org/tiny-mrpc-lora").private
    snapshot = downloaded("gluebox-org/tiny-mrpc-lora", env, work)
    remote = files_of(snapshot)
    local = files_of(lora_run / "best_model") | {f"adapter/{name}": content
                                                   for name, content in files_of(lora_run / "best_adapter").items()}
    assert set(remote) == set(local) | {".gitattributes"}
    assert all(remote[name] == content for name, content in local.items())

    anonymous = subprocess.run([sys.executable, "-c", "from huggingface_hub import snapshot_download\n"
                                "snapshot_download('gluebox-org/tiny-mrpc-lora')"],
                               env=user_env(hub, tmp_path / "anonymous", token=None), capture_output=True, text=True)
    assert anonymous.returncode != 0 and "RepositoryNotFoundError" in anonymous.stderr

    difference = client(
        "import torch\nfrom peft import PeftModel\nfrom transformers import AutoModelForSequenceClassification\n"
        f"base = AutoModelForSequenceClassification.from_pretrained({tiny_bert!r}, num_labels=2)\n"
        "adapted = PeftModel.from_pretrained(base, 'gluebox-org/tiny-mrpc-lora', subfolder='adapter').eval()\n"
        "merged = AutoModelForSequenceClassification.from_pretrained('gluebox-org/tiny-mrpc-lora').eval()\n"
        "ids = torch.randint(1000, 2000, (3, 20))\nbatch = {'input_ids': ids, 'attention_mask': torch.ones_like(ids)}\n"
        "with torch.no_grad():\n    print((adapted(**batch).logits - merged(**batch).logits).abs().max().item())\n",
        env, work)
    assert float(difference.splitlines()[-1]) < 1e-5

    assert_token_nowhere(TOKEN, [result.stdout, result.stderr], home, work, lora_run, besides=(home / "token",))


def test_an_existing_public_repository_is_not_pushed_to_with_private(hub, full_run, tmp_path):
    """--private on a repository that exists and is public: refused before any file is sent."""
    env = user_env(hub, tmp_path / "hf")
    assert gluebox(["push", str(full_run), "tiny-mrpc"], env, tmp_path).returncode == 0
    line = error_line(gluebox(["push", str(full_run), "tiny-mrpc", "--private"], env, tmp_path))
    assert "alice/tiny-mrpc already exists and is public" in line
    assert hub.repo("alice/tiny-mrpc").commits == ["initial commit", "gluebox push: run"]


# Refusals before the Hub is asked anything --------------------------------------------------------


def test_runs_that_cannot_be_pushed_and_missing_settings_are_one_line(hub, full_run, tmp_path):
    """An unfinished run, a run without best_model/, a malformed repository id, no token, offline
    mode: one line each, and not a single request to the Hub."""
    from gluebox.runs.directory import RunDirectory

    unfinished = tmp_path / "unfinished"
    shutil.copytree(full_run, unfinished, ignore=shutil.ignore_patterns("checkpoints"))
    (unfinished / "summary.json").unlink()
    RunDirectory(unfinished).set_status("interrupted")
    no_model = tmp_path / "no-model"
    shutil.copytree(full_run, no_model, ignore=shutil.ignore_patterns("checkpoints", "best_model"))
    env = user_env(hub, tmp_path / "hf")

    cases = [
        (["push", str(unfinished), "x"], env, "is not a complete run (status: interrupted)"),
        (["push", str(no_model), "x"], env, "has no best_model/ to push"),
        (["push", str(tmp_path), "x"], env, "is not a gluebox run directory"),
        (["push", str(full_run), "alice/x/y"], env, "'alice/x/y' is not a Hub repository id"),
        (["push", str(full_run), "x"], user_env(hub, tmp_path / "hf", token=None), "no Hugging Face token"),
        (["push", str(full_run), "x"], env | {"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1 is set"),
    ]
    for args, case_env, phrase in cases:
        line = error_line(gluebox(args, case_env, tmp_path))
        assert phrase in line, line
    assert hub.requests == []


# The Hub says no, or goes away --------------------------------------------------------------------


def test_hub_refusals_and_lost_connections_are_one_line_each(hub, full_run, tmp_path):
    """A token the Hub does not know (401), a namespace that is not alice's (403 on create), bob's
    public repository (403 on upload), the Hub not listening (connection refused), the Hub vanishing
    halfway through the weights' upload: exit 2 and one line each, never the token."""
    home = tmp_path / "hf"
    outputs = []

    def refused(args: list[str], env: dict[str, str]) -> str:
        result = gluebox(["push", str(full_run), *args], env, tmp_path)
        outputs.extend([result.stdout, result.stderr])
        return error_line(result)

    bad_token = "hf_NotAValidTokenAtAll000000000"
    line = refused(["tiny-mrpc"], user_env(hub, home, token=bad_token))
    assert "refused the Hugging Face token (401" in line and "hf auth login" in line
    assert bad_token not in line

    line = refused(["someone-else/tiny-mrpc"], user_env(hub, home))
    assert "does not let this token write to someone-else/tiny-mrpc (403" in line
    line = refused(["bob/shared-model"], user_env(hub, home))
    assert "does not let this token write to bob/shared-model (403" in line
    assert hub.repo("bob/shared-model").files == {}

    hub.go_away_at(f"PUT {hub.cdn}/lfs-upload/")
    line = refused(["tiny-mrpc"], user_env(hub, home))
    assert hub.went_away.is_set()
    assert "lost the connection to the Hub" in line and "run the same `gluebox push` again" in line
    assert hub.repo("alice/tiny-mrpc").commits == ["initial commit"]

    line = refused(["tiny-mrpc"], user_env(hub, home))  # nobody listens now
    assert "lost the connection to the Hub" in line and "Connection refused" in line

    assert_token_nowhere(TOKEN, outputs, home, tmp_path)
    assert_token_nowhere(bad_token, outputs, home, tmp_path)
