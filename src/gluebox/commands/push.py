"""``gluebox push RUN REPO_ID [--private]``: a finished run's model on the Hugging Face Hub.

One commit through huggingface_hub (``create_repo(exist_ok=True)``, then ``upload_folder``) puts
``best_model/`` (the weights, config, tokenizer and model card, which becomes the repository's
page) at the repository's root, so ``from_pretrained(REPO_ID)`` loads it; a ``--peft lora`` run's
``best_adapter/`` goes into ``adapter/`` (``PeftModel.from_pretrained(base, REPO_ID,
subfolder="adapter")``). Other files already in the repository are kept, but ``adapter/`` holds this
run's adapter only.

The token is huggingface_hub's: ``HF_TOKEN``, else the one ``hf auth login`` stored. gluebox
never reads it beyond asking whether there is one, and never prints or writes it. A refused token,
a repository the token may not write to and a lost connection are each one line.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from gluebox.errors import GlueboxError
from gluebox.runs.directory import BEST_ADAPTER, BEST_MODEL, SUMMARY, RunDirectory, open_run

ADAPTER_FOLDER = "adapter"
"""Where a LoRA run's ``best_adapter/`` goes in the repository."""
INVALID_TOKEN = "Invalid credentials in Authorization header"
"""The Hub's message for a token it does not accept (huggingface_hub tells it apart from a missing repository)."""


def check_pushable(run: RunDirectory, path: str) -> list[tuple[Path, str]]:
    """The run's folders to push and where each goes in the repository; one line when there is none."""
    status = (run.status() or {}).get("status")
    if status != "complete" or not run.file(SUMMARY).is_file():
        raise GlueboxError(f"{path} is not a complete run (status: {status or 'unknown'}); push a run that finished "
                           f"(an interrupted one: `gluebox train --resume {path}` first)")
    model = run.file(BEST_MODEL)
    if not (model / "config.json").is_file():
        raise GlueboxError(f"{path} has no best_model/ to push (a run from an older gluebox?); "
                           f"`gluebox evaluate {path}` still works on its checkpoints")
    folders = [(model, "")]
    if (run.file(BEST_ADAPTER) / "adapter_config.json").is_file():
        folders.append((run.file(BEST_ADAPTER), ADAPTER_FOLDER))
    return folders


def check_hub_settings(repo_id: str) -> None:
    """A repository id the Hub accepts, a token, and not offline: each checked before any request."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise GlueboxError(f"'{repo_id}' is not a Hub repository id: write NAME (in your account) or NAMESPACE/NAME, "
                           "with letters, digits, '-', '_' and '.'") from None
    if constants.HF_HUB_OFFLINE:
        raise GlueboxError("HF_HUB_OFFLINE=1 is set, and pushing needs the Hub; unset it to push")
    if get_token() is None:
        raise GlueboxError("no Hugging Face token: set HF_TOKEN to a token with write access, or run `hf auth login`")


def staged(folders: list[tuple[Path, str]]) -> Path:
    """A temporary folder laid out as the repository will be: links to the run's files (nothing copied)."""
    stage = Path(tempfile.mkdtemp(prefix="gluebox-push-"))
    for folder, prefix in folders:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                target = stage / prefix / file.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(file.resolve(), target)
    return stage


def hub_error(error: BaseException, repo_id: str) -> GlueboxError | None:
    """The one line for a failed push: the Hub's answer, or the lost connection, found anywhere in
    the exception's chain (huggingface_hub wraps a failed file upload in its own error); None for
    anything else (a bug, kept with its traceback). huggingface_hub 2.4 talks HTTP through httpx2,
    whose transport errors are the lost connections."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, HfHubHTTPError) and error.response is not None:
            status = error.response.status_code
            message = error.response.headers.get("X-Error-Message") or error.server_message or ""
            if status == 401 and message == INVALID_TOKEN:
                return GlueboxError("the Hub refused the Hugging Face token (401: invalid or expired); set HF_TOKEN to "
                                    "a valid token with write access, or run `hf auth login` again")
            if isinstance(error, RepositoryNotFoundError) or status == 404:
                return GlueboxError(f"{repo_id} is not on the Hub, or this token may not see it ({status}); check "
                                    "REPO_ID, or push to NAME alone (a repository in your own account)")
            if status == 403:
                namespace = repo_id.split("/")[0] if "/" in repo_id else "your account"
                return GlueboxError(f"the Hub does not let this token write to {repo_id} (403 Forbidden): "
                                    f"{namespace} is not your account or an organization you write to, or the token "
                                    "is read-only; push to NAME alone (your account), or use a token with write access")
            first_line = (message.strip().splitlines() or ["no message"])[0]
            return GlueboxError(f"the Hub answered {status} while pushing to {repo_id}: {first_line}")
        if isinstance(error, httpx2.TransportError):
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return GlueboxError(f"lost the connection to the Hub ({constants.ENDPOINT}: {reason}) while pushing to "
                                f"{repo_id}; check the network and run the same `gluebox push` again")
        error = error.__cause__ or error.__context__
    return None


def _quiet_hub() -> None:
    """huggingface_hub's warnings off (gluebox says what happened); its progress bars only on a terminal."""
    from huggingface_hub.utils import disable_progress_bars
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
    if not sys.stderr.isatty():
        disable_progress_bars()


def push(path: str, repo_id: str, private: bool = False) -> str:
    """Push the run at ``path`` to ``repo_id`` (created if needed, private with ``private``); the commit's URL."""
    run = open_run(path)
    folders = check_pushable(run, path)
    check_hub_settings(repo_id)
    _quiet_hub()
    from huggingface_hub import HfApi

    files = [file for folder, _ in folders for file in folder.rglob("*") if file.is_file()]
    size = sum(file.stat().st_size for file in files)
    what = f"{BEST_MODEL}/" + (f" and {BEST_ADAPTER}/ (as {ADAPTER_FOLDER}/)" if len(folders) > 1 else "")
    print(f"pushing {what} of {path}: {len(files)} files, {size / 1e6:.1f} MB", flush=True)
    api = HfApi()
    stage = staged(folders)
    try:
        url = api.create_repo(repo_id, private=True if private else None, exist_ok=True)
        repo_id = url.repo_id
        if private and not api.repo_info(repo_id).private:
            raise GlueboxError(f"{repo_id} already exists and is public, and --private does not change an existing "
                               "repository; make it private in its settings on the Hub, or push without --private")
        commit = api.upload_folder(repo_id=repo_id, folder_path=stage, delete_patterns=[f"{ADAPTER_FOLDER}/*"],
                                   commit_message=f"gluebox push: {Path(path).resolve().name}")
    except GlueboxError:
        raise
    except Exception as error:  # noqa: BLE001 - the Hub's answers and lost connections become one line; others re-raised
        line = hub_error(error, repo_id)
        if line is None:
            raise
        raise line from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"pushed to {url}{' (private)' if private else ''} at commit {commit.oid[:12]}", flush=True)
    print(f"  load it: AutoModelForSequenceClassification.from_pretrained(\"{repo_id}\")", flush=True)
    if len(folders) > 1:
        print(f"  adapter: PeftModel.from_pretrained(base_model, \"{repo_id}\", subfolder=\"{ADAPTER_FOLDER}\")", flush=True)
    return commit.commit_url
