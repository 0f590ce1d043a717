"""The C allocator: gluebox restarts itself under mimalloc, and freed memory goes back to the OS when asked."""

from __future__ import annotations

import json
import shutil
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import train_args
from fixtures import write_mrpc

from gluebox import allocator
from gluebox.cli import allocator_choice

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import sys
import time
import torch
from gluebox.allocator import active, return_freed_memory_to_os

def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

if sys.argv[1] == "release":
    assert return_freed_memory_to_os()
block = torch.ones(4 * 2**20 // 4)  # freeing a 4 MiB block raises glibc's dynamic threshold
del block
before = rss_mib()
blocks, pins = [], []
for _ in range(50):  # 150 MiB of 3 MiB tensors, each followed by a small tensor that stays alive
    blocks.append(torch.ones(3 * 2**20 // 4))
    pins.append(torch.ones(64 * 1024 // 4))
del blocks
print(active(), rss_mib() - before)
"""

needs_mimalloc = pytest.mark.skipif(allocator.mimalloc_library() is None, reason="mimalloc's wheel is Linux-only")


def retained_mib(mode: str, preload: Path | None = None) -> tuple[str, int]:
    """(allocator, MiB still resident) after a probe frees 150 MiB of tensors it allocated among live ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_") and k != "LD_PRELOAD"}
    if preload is not None:
        env |= {"LD_PRELOAD": str(preload), "MIMALLOC_PURGE_DELAY": allocator.PURGE_DELAY_MS}
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env)
    name, mib = result.stdout.strip().splitlines()[-1].split()
    return name, int(mib)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_keeps_freed_tensors_unless_asked_to_return_them():
    assert retained_mib("release") == ("system", pytest.approx(0, abs=20))
    name, kept = retained_mib("keep")
    assert name == "system" and kept > 100, "the probe no longer shows glibc keeping freed memory"


@needs_mimalloc
def test_mimalloc_keeps_freed_tensors_for_reuse_unless_asked_to_return_them():
    """Also proves that :data:`gluebox.allocator.MI_OPTION_PURGE_DELAY` is the purge delay's number."""
    library = allocator.mimalloc_library()
    assert retained_mib("release", library) == ("mimalloc", pytest.approx(0, abs=20))
    name, kept = retained_mib("keep", library)
    assert name == "mimalloc" and kept > 100


def run_environment(tmp_path: Path, *extra: str) -> dict:
    """environment.json of a short `python -m gluebox train`, the way a user starts it."""
    from conftest import make_tiny_model

    model = tmp_path / "model"
    if not model.exists():
        make_tiny_model(model)
    data = write_mrpc(tmp_path / "mrpc", train_rows=16, dev_rows=8)
    run = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.VARIABLE)}
    args = train_args(str(model), run, "--task_name", "mrpc", "--data_dir", str(data), "--epochs", "1", *extra)
    result = subprocess.run([sys.executable, "-m", "gluebox", *args], capture_output=True, text=True,
                            env=env | {"PYTHONPATH": str(REPO / "src")}, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads((run / "environment.json").read_text())


@needs_mimalloc
def test_the_command_restarts_itself_under_mimalloc_by_default_and_not_with_system(tmp_path):
    default = run_environment(tmp_path)
    assert default["allocator"] == "mimalloc"
    assert default["mimalloc_purge_delay_ms"] == allocator.PURGE_DELAY_MS
    system = run_environment(tmp_path, "--allocator", "system")
    assert system["allocator"] == "system" and system["mimalloc_purge_delay_ms"] is None


def test_allocator_is_read_before_parsing_from_flag_config_environment_or_the_run(tmp_path, monkeypatch):
    monkeypatch.delenv(allocator.VARIABLE, raising=False)
    assert allocator_choice(["train", "--task_name", "rte"]) == "mimalloc"
    assert allocator_choice(["train", "--allocator", "system"]) == "system"
    assert allocator_choice(["train", "--allocator=system"]) == "system"
    config = tmp_path / "config.yaml"
    config.write_text("allocator: system\n")
    assert allocator_choice(["train", "--config", str(config)]) == "system"
    monkeypatch.setenv(allocator.VARIABLE, "system")
    assert allocator_choice(["train"]) == "system"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("allocator: mimalloc\n")
    assert allocator_choice(["train", "--resume", str(run)]) == "mimalloc"
    assert allocator_choice(["train", "--resume", str(run), "--allocator", "system"]) == "system"  # no effect on the maths
    assert allocator_choice(["predict", str(run), "--input", "x.tsv"]) == "mimalloc"


def test_the_restarted_process_gives_its_children_the_users_ld_preload(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/lib/libmimalloc.so.3")
    monkeypatch.setenv(allocator.REEXECUTED, "")
    allocator.settle_after_reexecution()
    assert "LD_PRELOAD" not in os.environ and allocator.REEXECUTED not in os.environ
    monkeypatch.setenv("LD_PRELOAD", "/lib/libmimalloc.so.3 /opt/users.so")
    monkeypatch.setenv(allocator.REEXECUTED, "/opt/users.so")
    allocator.settle_after_reexecution()
    assert os.environ["LD_PRELOAD"] == "/opt/users.so"


def test_an_unknown_allocator_is_one_line(capsys):
    from gluebox.cli import main

    assert main(["train", "--allocator", "tcmalloc", "--model_name_or_path", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allocator" in err and "mimalloc" in err


def test_memory_plan_returns_freed_memory_when_asked_and_under_a_tight_budget(monkeypatch):
    """--memory_budget always returns freed memory; a container's limit only when it is tight (freed memory
    kept in the process can grow the peak by half): under 8 GB, DistilBERT's 2.1 GB plan keeps it (faster),
    under 3 GB it returns it."""
    from transformers import DistilBertConfig

    from gluebox import resources
    from gluebox.training import memory
    from gluebox.training.memory import plan

    config = DistilBertConfig()
    assert plan(32, None, "8GB", 66_000_000, config, 103).returns_freed_memory
    assert plan(32, None, "3GB", 66_000_000, config, 103, release_memory=False).returns_freed_memory
    assert plan(32, None, None, 66_000_000, config, 103, release_memory=True).returns_freed_memory
    for limit, returned in ((8 * 2**30, False), (3 * 2**30, True), (2 * 2**30, True)):
        monkeypatch.setattr(resources, "memory_limit", lambda limit=limit: limit)
        container = plan(32, None, None, 66_000_000, config, 103, micro_batch_tokens=2048)
        assert container.budget_source == memory.CONTAINER_LIMIT and container.budget_bytes == limit
        assert container.returns_freed_memory == returned, (limit, container.estimated_peak_bytes)
    monkeypatch.setattr(resources, "memory_limit", lambda: None)
    assert not plan(32, None, None, 66_000_000, config, 103, micro_batch_tokens=2048).returns_freed_memory


@pytest.mark.skipif(shutil.which("gcc") is None or not sys.platform.startswith("linux"), reason="needs gcc to build a library")
def test_a_library_that_cannot_load_is_not_preloaded(tmp_path, monkeypatch):
    """A slim image without mimalloc's libatomic.so.1 keeps the system allocator instead of failing to start."""
    (tmp_path / "dep.c").write_text("int dep(void) { return 1; }\n")
    (tmp_path / "needs.c").write_text("int dep(void);\nint needs(void) { return dep(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libdep.so"), str(tmp_path / "dep.c")], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libneeds.so"), str(tmp_path / "needs.c"),
                    "-L", str(tmp_path), "-ldep"], check=True)
    (tmp_path / "libdep.so").unlink()
    monkeypatch.setattr(allocator, "mimalloc_library", lambda: tmp_path / "libneeds.so")
    base = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    assert not allocator.starts(base | {"LD_PRELOAD": str(tmp_path / "libneeds.so")})
    assert "LD_PRELOAD" not in allocator.environment_for("mimalloc", base)
    assert allocator.starts(base)


SITECUSTOMIZE = '''
import os
from pathlib import Path

if os.environ.get("GLUEBOX_TEST_MIMALLOC"):  # where this test "installed" the allocator's library
    from gluebox import allocator

    allocator.mimalloc_library = lambda: Path(os.environ["GLUEBOX_TEST_MIMALLOC"])
'''


def installed_at(folder: Path, library: Path) -> dict:
    """The environment of a `gluebox` command whose allocator library is ``library`` (a sitecustomize
    module in the new process points :func:`gluebox.allocator.mimalloc_library` at it, as an install in
    ``folder`` would)."""
    site = folder / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.VARIABLE, allocator.REEXECUTED)}
    python_path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return env | {"PYTHONPATH": python_path, "GLUEBOX_TEST_MIMALLOC": str(library)}


@needs_mimalloc
def test_an_install_path_with_a_space_runs_under_mimalloc_without_loader_errors(tmp_path):
    """LD_PRELOAD splits on spaces: the library is preloaded through a link in a private folder whose path
    has none. Before, every command printed two loader errors (one per half of the path) and kept glibc."""
    from conftest import make_tiny_model

    spaced = tmp_path / "Ann Lee" / "venv lib"
    spaced.mkdir(parents=True)
    library = spaced / allocator.mimalloc_library().name
    shutil.copy2(allocator.mimalloc_library(), library)
    data = write_mrpc(tmp_path / "mrpc", train_rows=16, dev_rows=8)
    run = tmp_path / "run"
    args = train_args(str(make_tiny_model(tmp_path / "model")), run, "--task_name", "mrpc", "--data_dir", str(data),
                      "--epochs", "1")
    temporary = tmp_path / "tmp"  # $TMPDIR: where the link goes
    temporary.mkdir()
    result = subprocess.run([sys.executable, "-m", "gluebox", *args], capture_output=True, text=True, timeout=600,
                            env=installed_at(tmp_path, library) | {"TMPDIR": str(temporary)})
    assert result.returncode == 0, result.stderr
    assert "ld.so" not in result.stderr and "cannot be preloaded" not in result.stderr, result.stderr
    assert json.loads((run / "environment.json").read_text())["allocator"] == "mimalloc"
    (link,) = (temporary / f"gluebox-preload-{os.getuid()}").iterdir()
    assert link.resolve() == library


@needs_mimalloc
def test_a_preload_link_is_private_and_reused_and_without_one_the_system_allocator_stays_with_a_line(
        tmp_path, monkeypatch, capsys):
    spaced = tmp_path / "with space"
    spaced.mkdir()
    library = spaced / allocator.mimalloc_library().name
    shutil.copy2(allocator.mimalloc_library(), library)
    monkeypatch.setattr(allocator, "mimalloc_library", lambda: library)
    monkeypatch.setattr(allocator, "LINK_FOLDERS", (str(tmp_path / "links"),))
    (tmp_path / "links").mkdir()
    base = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    preloaded = allocator.environment_for("mimalloc", base)
    link = Path(preloaded["LD_PRELOAD"])
    assert link.parent == tmp_path / "links" / f"gluebox-preload-{os.getuid()}" and link.resolve() == library
    assert link.parent.stat().st_mode & 0o777 == 0o700
    assert allocator.environment_for("mimalloc", base)["LD_PRELOAD"] == str(link)
    assert len(list(link.parent.iterdir())) == 1

    link.parent.chmod(0o755)  # a folder others may write to: a link there could be swapped
    assert allocator.environment_for("mimalloc", base) == base
    note = capsys.readouterr().err
    assert len(note.splitlines()) == 1 and note.startswith("gluebox: note: using the system allocator: ")
    assert str(library) in note and "holds a space or a colon" in note


HOLDING_LIBRARY = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Loaded: say so in the file named by GLUEBOX_TEST_HOLD, then hold until that file is removed. */
__attribute__((constructor)) static void hold(void) {
    const char *marker = getenv("GLUEBOX_TEST_HOLD");
    if (marker == NULL) return;
    FILE *file = fopen(marker, "w");
    if (file != NULL) fclose(file);
    while (access(marker, F_OK) == 0) usleep(5000);
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None or not sys.platform.startswith("linux"), reason="needs gcc to build a library")
def test_ctrl_c_while_the_command_restarts_itself_ends_with_one_line(tmp_path):
    """Before it restarts under the allocator, the command checks that Python starts with the library
    preloaded; here the library holds while it loads (and says so), and Ctrl+C arrives then."""
    import signal

    (tmp_path / "hold.c").write_text(HOLDING_LIBRARY)
    library = tmp_path / "libholding.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(tmp_path / "hold.c")], check=True)
    marker = tmp_path / "loading"
    env = installed_at(tmp_path, library) | {"GLUEBOX_TEST_HOLD": str(marker)}
    process = subprocess.Popen([sys.executable, "-m", "gluebox", "train", "--model_name_or_path", "unused"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        marker.unlink(missing_ok=True)
        process.kill()
        process.wait()
    assert (process.returncode, err.decode(), out.decode()) == (130, "gluebox: interrupted\n", "")
