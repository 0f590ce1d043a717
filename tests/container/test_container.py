"""The Docker image, built and run with a real engine: built as a user builds it (its pre-cache step
downloading through a stand-in for the Hugging Face Hub), the README's first command offline,
offline under Codespace limits, same results as the host, bounded memory, no leaked secrets.

These tests need the engine that ``tests/container/run.sh`` starts and the variables it sets. The
session fixture :func:`built_image` builds the image once, before the first test: the default
build (``MODEL=distilbert-base-uncased``, ``TASK=mrpc``) with ``HF_ENDPOINT`` and ``HUB_PROXY``
pointing at :class:`hub_server.HubStandIn` on 127.0.0.1 (``--network=host``), from a build context
with the shipped MiniLM model and the MRPC TSVs under ``docker/bake/`` (the other tests train
those). Without ``GLUEBOX_IMAGE`` the tests are skipped, so the normal ``pytest`` run never touches
Docker.

Environment (all set by run.sh):
  GLUEBOX_IMAGE              tag of the image the session builds
  DOCKER_BUILD_EXTRA_ARGS    flags for `docker build` (the sandbox's --network=host and torch index)
  GLUEBOX_GLUE_DIR           the GLUE data (MRPC, RTE, SST-2) the Hub stand-in serves as nyu-mll/glue
  GLUEBOX_IMAGE_MODEL        model path inside the image (e.g. /opt/bake/model)
  GLUEBOX_IMAGE_DATA_DIR     GLUE MRPC directory inside the image (e.g. /opt/bake/MRPC)
  GLUEBOX_HOST_MODEL         the same model on the host
  GLUEBOX_HOST_DATA_DIR      the same MRPC directory on the host
  GLUEBOX_CONTAINER_REPORT   directory for the memory report (default: a temp directory)
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub_server import HubStandIn, build_distilbert, build_glue

REPO = Path(__file__).resolve().parents[2]

IMAGE = os.environ.get("GLUEBOX_IMAGE")

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(not IMAGE, reason="GLUEBOX_IMAGE is unset: run tests/container/run.sh"),
]

FAKE_KEY = "gluebox-fake-key-0123456789abcdef0123456789abcdef0123"
CODESPACE = ["--cpus", "2", "--memory", "8g", "--memory-swap", "8g"]
RUN_FILES = ["config.yaml", "environment.json", "metrics.csv", "metrics.jsonl", "summary.json"]
SHORT = ["--max_train_samples", "64", "--max_eval_samples", "64", "--epochs", "1", "--seed", "42"]


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is unset: run tests/container/run.sh")
    return value


def image_model() -> str:
    return _env("GLUEBOX_IMAGE_MODEL")


def image_data() -> str:
    return _env("GLUEBOX_IMAGE_DATA_DIR")


def report_dir() -> Path:
    path = Path(os.environ.get("GLUEBOX_CONTAINER_REPORT") or Path(os.environ.get("TMPDIR", "/tmp")) / "gluebox-container-report")
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_volume(tmp_path: Path) -> Path:
    """A host directory the image's non-root user can write to, mounted at /runs."""
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o777)
    return runs


def docker(*args: str, timeout: float = 900, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def run_gluebox(runs: Path, gluebox_args: list[str], *, docker_args: list[str] = (), name: str | None = None,
                rm: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """``docker run`` the image offline (--network none) with ``runs`` mounted at /runs."""
    args = ["run", "--network", "none", "--init", "-v", f"{runs}:/runs"]
    if rm:
        args.append("--rm")
    if name:
        args += ["--name", name]
    args += [*docker_args, IMAGE, *gluebox_args]
    start = time.monotonic()
    proc = docker(*args, timeout=timeout)
    print(f"docker {' '.join(args)}\n  -> exit {proc.returncode} in {time.monotonic() - start:.0f}s")
    return proc


def show(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"


def assert_complete_run(run_dir: Path) -> dict:
    assert run_dir.is_dir(), f"no run directory at {run_dir}"
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    assert not missing, f"{run_dir} lacks {missing}: has {sorted(p.name for p in run_dir.iterdir())}"
    assert (run_dir / "checkpoints").is_dir(), "no checkpoints/"
    assert (run_dir / "best_model" / "config.json").is_file(), "best_model/ is not a saved HF model"
    assert not (run_dir / "RUNNING").exists(), "RUNNING marker left behind"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary.get("status") == "complete", summary
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["allocator"] == "mimalloc", "gluebox did not restart itself under mimalloc"
    return summary


class PeakMemory:
    """``--cgroup-parent`` for a container; its peak memory (cgroup v1 or v2) after the container exits."""

    def __init__(self, label: str):
        self.label = label
        self.name = f"gluebox-test-{label}-{uuid.uuid4().hex[:8]}"

    @property
    def docker_args(self) -> list[str]:
        return ["--cgroup-parent", f"/{self.name}"]

    def read(self) -> int | None:
        for path in (Path("/sys/fs/cgroup/memory") / self.name / "memory.max_usage_in_bytes",
                     Path("/sys/fs/cgroup") / self.name / "memory.peak"):
            try:
                return int(path.read_text().strip())
            except (OSError, ValueError):
                continue
        return None

    def cleanup(self) -> None:
        root = Path("/sys/fs/cgroup")
        for directory in [root / self.name, *(p / self.name for p in root.iterdir() if p.is_dir())]:
            try:
                directory.rmdir()
            except OSError:
                pass

    def report(self, peak: int | None, limit: str, extra: dict) -> dict:
        entry = {"label": self.label, "limit": limit, "cgroup": self.name, "peak_bytes": peak,
                 "peak_mib": round(peak / 2**20, 1) if peak else None,
                 "source": "memory.max_usage_in_bytes of the --cgroup-parent (includes page cache)", **extra}
        path = report_dir() / f"memory-{self.label}.json"
        path.write_text(json.dumps(entry, indent=2) + "\n")
        print(f"PEAK MEMORY {self.label}: {entry['peak_mib']} MiB under --memory {limit} (written to {path})")
        return entry


def perf_figures(run_dir: Path) -> dict:
    """Whatever peak-RSS/throughput figures gluebox itself recorded in summary.json, for the report."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in summary.items() if any(w in k.lower() for w in ("rss", "memory", "peak", "batch", "perf"))}


@dataclass
class Build:
    """The session's image build through the Hub stand-in."""

    hub: HubStandIn
    """The stand-in the pre-cache step downloaded from (stopped): its requests, what it did not understand."""
    seconds: float


@pytest.fixture(scope="session", autouse=True)
def built_image(tmp_path_factory) -> Build:
    """Build ``GLUEBOX_IMAGE`` once per session: the default build (its pre-cache step downloads
    ``distilbert-base-uncased`` and ``nyu-mll/glue`` mrpc) with the Hub stand-in as ``HF_ENDPOINT``
    and ``HUB_PROXY``, from a context with MiniLM and the MRPC TSVs under docker/bake/. The build
    log, ``docker history`` and the image size go to the report directory."""
    host_model, host_data = _env("GLUEBOX_HOST_MODEL"), _env("GLUEBOX_HOST_DATA_DIR")
    folder = tmp_path_factory.mktemp("hub")
    model = build_distilbert(folder / "distilbert-base-uncased", host_model)
    glue, infos = build_glue(folder / "glue", Path(_env("GLUEBOX_GLUE_DIR")))
    context = tmp_path_factory.mktemp("build-context")
    subprocess.run([str(REPO / "docker" / "make-bake-context.sh"), str(context), host_model, host_data],
                   check=True, capture_output=True, text=True)
    report = report_dir()
    start = time.monotonic()
    with HubStandIn([model, glue], infos) as hub:
        args = ["build", *shlex.split(os.environ.get("DOCKER_BUILD_EXTRA_ARGS", "")),
                "--build-arg", f"HF_ENDPOINT={hub.endpoint}", "--build-arg", f"HUB_PROXY={hub.endpoint}",
                "-t", IMAGE, str(context)]
        print(f"docker {' '.join(args)}")
        with (report / "build.log").open("w") as log:
            proc = subprocess.run(["docker", *args], stdout=log, stderr=subprocess.STDOUT, timeout=3600)
    seconds = time.monotonic() - start
    shutil.rmtree(context, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    build_log = (report / "build.log").read_text()
    assert proc.returncode == 0, f"docker build exited {proc.returncode}:\n{build_log[-4000:]}"
    print("\n".join(line for line in build_log.splitlines() if line.startswith(("Step ", "Successfully"))))
    print(f"image built in {seconds:.0f}s, {len(hub.requests)} requests to the Hub stand-in")
    history = docker("history", "--format", "{{.Size}}\t{{.CreatedBy}}", IMAGE, check=True).stdout
    (report / "history.txt").write_text("\n".join(line[:160] for line in history.splitlines()) + "\n")
    size = int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE, check=True).stdout)
    (report / "size.txt").write_text(f"image size: {size} bytes ({size / 1e9:.2f} GB, {size / 2**20:.0f} MiB)\n")
    print(history + (report / "size.txt").read_text())
    return Build(hub, seconds)


def test_first_command_offline_in_an_image_built_through_the_hub(built_image, tmp_path):
    """0. The build's pre-cache step downloaded the model and MRPC through the Hub stand-in (and asked
    it nothing it does not understand); the stand-in's address is in no layer, history line or
    setting of the image; the README's first command then trains offline (--network none)."""
    hub = built_image.hub
    print("\n".join(hub.requests))
    hub.check()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "mrpc/train-00000-of-00001.parquet",
                 "mrpc/validation-00000-of-00001.parquet"):
        assert hub.fetched(name), f"the build did not download {name}"
    assert not hub.fetched("rte/train-00000-of-00001.parquet")

    address = hub.endpoint.removeprefix("http://")
    history = docker("history", "--no-trunc", IMAGE, check=True).stdout
    config = docker("image", "inspect", IMAGE, check=True).stdout
    for text in (history, config):
        for needle in (address, "HF_ENDPOINT", "HUB_PROXY"):
            assert needle not in text, f"{needle} is in the image's history or config"
    env = json.loads(docker("image", "inspect", "--format", "{{json .Config.Env}}", IMAGE, check=True).stdout)
    assert "HF_HUB_OFFLINE=1" in env and "GLUEBOX_MODEL=distilbert-base-uncased" in env, env
    assert not image_layers_contain(IMAGE, address.encode()), "the stand-in's address is in a layer"

    runs = runs_volume(tmp_path)
    first = ["train", "--task_name", "mrpc", "--model_name_or_path", "distilbert-base-uncased"]
    proc = run_gluebox(runs, [*first, "--max_train_samples", "8", "--max_eval_samples", "8", "--epochs", "1",
                              "--wandb_mode", "disabled", "--no-progress_bar"], docker_args=CODESPACE)
    assert proc.returncode == 0, show(proc)
    (run_dir,) = [path.parent for path in runs.glob("*/summary.json")]
    summary = assert_complete_run(run_dir)
    assert summary["model"] == "distilbert-base-uncased" and summary["task"] == "mrpc", summary
    assert summary["train_examples"] == 8 and summary["final"]["validation/examples"] == 8, summary


def test_offline_full_epoch_under_codespace_limits(tmp_path):
    """1. --network none, 2 CPUs, 8 GB: one full MRPC epoch of the baked model, complete run dir."""
    runs = runs_volume(tmp_path)
    meter = PeakMemory("mrpc-full-epoch-8g")
    try:
        proc = run_gluebox(runs, ["train", "--task_name", "mrpc", "--model_name_or_path", image_model(),
                                  "--data_dir", image_data(), "--epochs", "1", "--seed", "42",
                                  "--output_dir", "/runs/full-epoch"],
                           docker_args=[*CODESPACE, *meter.docker_args], timeout=1200)
        peak = meter.read()
    finally:
        meter.cleanup()
    assert proc.returncode == 0, show(proc)
    assert_complete_run(runs / "full-epoch")
    meter.report(peak, "8g", {"run": "mrpc, full epoch, baked model", **perf_figures(runs / "full-epoch")})


def test_same_result_inside_and_outside(tmp_path):
    """2. The same short run in the container and on the host: `gluebox compare` says identical."""
    runs = runs_volume(tmp_path)
    common = ["train", "--task_name", "mrpc", *SHORT, "--num_threads", "2", "--wandb_mode", "disabled"]
    inside = run_gluebox(runs, [*common, "--model_name_or_path", image_model(), "--data_dir", image_data(),
                                "--output_dir", "/runs/inside"], docker_args=CODESPACE)
    assert inside.returncode == 0, show(inside)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("WANDB_API_KEY", None)
    outside = subprocess.run([sys.executable, "-m", "gluebox", *common,
                              "--model_name_or_path", _env("GLUEBOX_HOST_MODEL"),
                              "--data_dir", _env("GLUEBOX_HOST_DATA_DIR"),
                              "--output_dir", str(tmp_path / "outside")],
                             capture_output=True, text=True, env=env, timeout=900)
    assert outside.returncode == 0, show(outside)
    assert_complete_run(runs / "inside")
    assert_complete_run(tmp_path / "outside")

    compared = subprocess.run([sys.executable, "-m", "gluebox", "compare", str(runs / "inside"), str(tmp_path / "outside")],
                              capture_output=True, text=True, timeout=300)
    print(compared.stdout)
    assert compared.returncode == 0, show(compared)
    assert "identical" in compared.stdout


def make_distilbert_shaped(path: Path) -> Path:
    """A randomly initialised DistilBERT-base-shaped classifier (66M parameters) with the bert-base-uncased
    vocabulary (the MiniLM tokenizer), readable by the image's non-root user."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DistilBertConfig

    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(DistilBertConfig()).save_pretrained(path)
    AutoTokenizer.from_pretrained(_env("GLUEBOX_HOST_MODEL")).save_pretrained(path)
    path.chmod(0o755)
    for file in path.iterdir():
        file.chmod(0o644)
    return path


def test_distilbert_batch_32_fits_2g(tmp_path):
    """3. A DistilBERT-shaped model at batch 32 trains under --memory 2g; peak memory is reported."""
    model = make_distilbert_shaped(tmp_path / "distilbert")
    runs = runs_volume(tmp_path)
    meter = PeakMemory("distilbert-b32-2g")
    try:
        proc = run_gluebox(runs, ["train", "--task_name", "mrpc", "--model_name_or_path", "/model",
                                  "--data_dir", image_data(), "--train_batch_size", "32",
                                  "--max_train_samples", "256", "--max_eval_samples", "64", "--epochs", "1",
                                  "--seed", "42", "--output_dir", "/runs/distilbert-2g"],
                           docker_args=["--cpus", "2", "--memory", "2g", "--memory-swap", "2g",
                                        "-v", f"{model}:/model:ro", *meter.docker_args])
        peak = meter.read()
    finally:
        meter.cleanup()
    entry = meter.report(peak, "2g", {"run": "distilbert-shaped, batch 32, 256 train / 64 eval samples",
                                      "exit": proc.returncode, **perf_figures(runs / "distilbert-2g")})
    assert proc.returncode == 0, ("OOM-killed (137)? " if proc.returncode == 137 else "") + show(proc)
    assert_complete_run(runs / "distilbert-2g")
    # The cgroup peak counts page cache, which fills up to the limit and is then reclaimed, so it
    # sits at ~2 GiB whenever the run reads enough files; success (no OOM kill, exit 0) is the test,
    # the report (with gluebox's own peak RSS from summary.json) is the measurement.
    assert entry["peak_bytes"] is None or entry["peak_bytes"] > 0


def test_runs_as_non_root():
    """4a. The default user is not root."""
    proc = docker("run", "--rm", "--network", "none", "--entrypoint", "id", IMAGE, check=True, timeout=120)
    print(proc.stdout)
    uid = int(docker("run", "--rm", "--network", "none", "--entrypoint", "id", IMAGE, "-u",
                     check=True, timeout=120).stdout.strip())
    assert uid != 0, proc.stdout
    user = docker("image", "inspect", "--format", "{{.Config.User}}", IMAGE, check=True).stdout.strip()
    assert user and user not in ("root", "0", "0:0"), f"image USER is {user!r}"


def stream_contains(cmd: list[str], needle: bytes, timeout: float = 900) -> bool:
    """Whether the stdout of ``cmd`` contains ``needle``, read in chunks (works for multi-GB streams)."""
    found, tail = False, b""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
        deadline = time.monotonic() + timeout
        while chunk := proc.stdout.read(1 << 22):
            if needle in tail + chunk:
                found = True
            tail = chunk[-len(needle):]
            assert time.monotonic() < deadline, f"{cmd} took too long"
        assert proc.wait() == 0, f"{cmd} exited {proc.returncode}"
    return found


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


def image_layer_dirs(image: str) -> list[Path] | None:
    """The host directories holding each layer of ``image``, or None when they cannot be read.

    Under the overlay2 storage driver (the sandbox's) every layer's files lie in a ``diff``
    directory that a root test can read in place. ``docker save`` would first copy the whole image
    (about 2 GB) into the engine's temporary directory, which on a nearly full disk fails with "no
    space left on device".
    """
    driver = json.loads(docker("image", "inspect", "--format", "{{json .GraphDriver}}", image, check=True).stdout)
    if driver.get("Name") != "overlay2":
        return None
    data = driver.get("Data") or {}
    dirs = [Path(d) for key in ("LowerDir", "UpperDir") for d in (data.get(key) or "").split(":") if d]
    return dirs if dirs and all(os.access(d, os.R_OK | os.X_OK) for d in dirs) else None


def image_layers_contain(image: str, needle: bytes) -> bool:
    """Whether any file of any layer of ``image`` contains ``needle``.

    Reads the layer directories in place when it can, else streams ``docker save``. The in-place
    scan must also find a string every gluebox image holds (its package name), so that a scan that
    reads nothing cannot pass.
    """
    dirs = image_layer_dirs(image)
    if dirs is None:
        return stream_contains(["docker", "save", image], needle)
    scripts = [d / "opt" / "venv" / "bin" for d in dirs if (d / "opt" / "venv" / "bin").is_dir()]
    assert any(files_containing(s, b"gluebox.cli") for s in scripts), f"no layer of {image} holds the gluebox command"
    return any(files_containing(d, needle) for d in dirs)


def test_wandb_key_leaks_nowhere(tmp_path):
    """4b. A W&B key given at run time (--env-file) is in no image layer, log line or run-dir file."""
    key = FAKE_KEY.encode()
    env_file = tmp_path / "wandb.env"
    env_file.write_text(f"WANDB_API_KEY={FAKE_KEY}\n")
    runs = runs_volume(tmp_path)
    name = f"gluebox-secret-{uuid.uuid4().hex[:8]}"
    try:
        proc = run_gluebox(runs, ["train", "--task_name", "mrpc", "--model_name_or_path", image_model(),
                                  "--data_dir", image_data(), "--max_train_samples", "32",
                                  "--max_eval_samples", "32", "--epochs", "1", "--wandb_mode", "offline",
                                  "--output_dir", "/runs/secret"],
                           docker_args=[*CODESPACE, "--env-file", str(env_file)], name=name, rm=False)
        assert proc.returncode == 0, show(proc)
        assert_complete_run(runs / "secret")
        # the key really reached the container (so the checks below mean something)
        env = docker("inspect", "--format", "{{json .Config.Env}}", name, check=True).stdout
        assert FAKE_KEY in env
        # no log line
        assert FAKE_KEY not in proc.stdout and FAKE_KEY not in proc.stderr, "key printed to the logs"
        logs = docker("logs", name, check=True)
        assert FAKE_KEY not in logs.stdout + logs.stderr
        # no file of the run directory (wandb/ offline files included)
        assert files_containing(runs / "secret", key) == []
        # nothing the run wrote anywhere in the container's filesystem (home, /tmp, caches)
        assert not stream_contains(["docker", "export", name], key), "key written inside the container"
    finally:
        docker("rm", "-f", name)
    # no image layer, no build history, no baked environment
    assert not image_layers_contain(IMAGE, key), "key found in an image layer"
    history = docker("history", "--no-trunc", IMAGE, check=True).stdout
    config = docker("image", "inspect", IMAGE, check=True).stdout
    assert FAKE_KEY not in history and FAKE_KEY not in config
    assert "WANDB_API_KEY" not in config, "the image sets WANDB_API_KEY itself"


def test_docker_stop_stops_both_processes_after_one_checkpoint_and_the_run_resumes_identically(tmp_path):
    """5. `docker stop` sends SIGTERM to the container's first process (tini, from --init, passes it on to
    gluebox: rank 0 of Fabric's launcher, which started rank 1). Both processes stop after one checkpoint
    and the container exits 143; a new container resumes the run to the same end as an uninterrupted one.
    The stop comes while both processes hold after step 5 (GLUEBOX_PAUSE_AT_STEPS), never after a sleep."""
    import torch

    runs = runs_volume(tmp_path)
    settings = ["train", "--model_name_or_path", image_model(), "--data_dir", image_data(), "--max_train_samples", "48",
                "--max_eval_samples", "16", "--train_batch_size", "4", "--eval_batch_size", "4", "--max_seq_length",
                "64", "--epochs", "2", "--devices", "2", "--accelerator", "cpu", "--strategy", "ddp",
                "--num_threads", "1", "--wandb_mode", "disabled", "--no-progress_bar"]
    reference = run_gluebox(runs, [*settings, "--output_dir", "/runs/reference"], docker_args=CODESPACE)
    assert reference.returncode == 0, show(reference)

    name = f"gluebox-stop-{uuid.uuid4().hex[:8]}"
    markers = [runs / "pauses" / f"paused-at-step-5-rank-{rank}" for rank in (0, 1)]
    started = docker("run", "-d", "--network", "none", "--init", "-v", f"{runs}:/runs", "--name", name, *CODESPACE,
                     "-e", "GLUEBOX_PAUSE_AT_STEPS=5", "-e", "GLUEBOX_PAUSE_DIR=/runs/pauses", IMAGE,
                     *settings, "--output_dir", "/runs/run")
    assert started.returncode == 0, show(started)
    try:
        deadline = time.monotonic() + 600
        while not all(marker.exists() for marker in markers):
            running = docker("inspect", "--format", "{{.State.Running}}", name, check=True).stdout.strip()
            assert running == "true", show(docker("logs", name))
            assert time.monotonic() < deadline, "the run never reached step 5"
            time.sleep(0.1)
        stopped = docker("stop", "-t", "120", name)
        assert stopped.returncode == 0, show(stopped)
        code = int(docker("wait", name, check=True).stdout.strip())
        logs = docker("logs", name, check=True)
    finally:
        docker("rm", "-f", name)
    assert code == 143, show(logs)
    lines = [line for line in logs.stderr.splitlines() if line.startswith("gluebox:")]
    assert len(lines) == 1 and lines[0].startswith("gluebox: interrupted: SIGTERM at epoch 1, step 5;"), show(logs)
    assert "Traceback" not in logs.stderr, show(logs)
    status = json.loads((runs / "run" / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM", status
    checkpoint = torch.load(runs / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 5

    resumed = run_gluebox(runs, ["train", "--resume", "/runs/run"], docker_args=CODESPACE)
    assert resumed.returncode == 0, show(resumed)
    compared = subprocess.run([sys.executable, "-m", "gluebox", "compare", str(runs / "run"), str(runs / "reference")],
                              capture_output=True, text=True, timeout=300)
    assert compared.returncode == 0 and "identical: 2 epoch(s)" in compared.stdout, show(compared)


def test_git_folders_in_the_build_context_stay_out_of_the_image(tmp_path):
    """6. A model cloned under docker/bake/ (the offline bake of docker/bake/README.md) keeps its remote URL,
    token included, in .git; the repository's .dockerignore keeps every .git folder out of the image."""
    token = "hf_bakedTOKEN0123456789"
    context = tmp_path / "context"
    model = context / "docker" / "bake" / "model"
    model.mkdir(parents=True)
    shutil.copy2(REPO / ".dockerignore", context)
    (context / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY docker/bake/ /opt/bake/\n")  # the image's own line
    subprocess.run(["git", "init", "-q", str(model)], check=True)
    subprocess.run(["git", "-C", str(model), "remote", "add", "origin", f"https://user:{token}@huggingface.co/org/m"],
                   check=True)
    (model / "config.json").write_text("{}\n")
    tag = f"gluebox-dockerignore-test:{uuid.uuid4().hex[:8]}"
    built = docker("build", *shlex.split(os.environ.get("DOCKER_BUILD_EXTRA_ARGS", "")), "-t", tag, str(context))
    assert built.returncode == 0, show(built)
    try:
        listing = docker("run", "--rm", "--network", "none", "--entrypoint", "find", tag, "/opt/bake", check=True).stdout
        found = docker("run", "--rm", "--network", "none", "--entrypoint", "grep", tag, "-r", token, "/opt/bake")
    finally:
        docker("rmi", "-f", tag)
    assert "/opt/bake/model/config.json" in listing and ".git" not in listing, listing
    assert found.returncode == 1 and token not in found.stdout, show(found)
