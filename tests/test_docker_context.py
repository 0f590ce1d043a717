"""What goes into the Docker build context: no .git folder at any depth (a clone's remote URL can hold a
token). The image itself is built and checked in tests/container; this needs no Docker engine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_secretTOKEN0123456789"


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.email=test@example.com", "-c", "user.name=test", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("tar") is None, reason="needs git and tar")
def test_the_bake_context_copies_no_git_folder(tmp_path):
    """docker/make-bake-context.sh copies the repository's files, untracked ones included: a model cloned
    under docker/bake/ (an untracked nested repository) came with its .git, remote URL and token included."""
    repo = tmp_path / "repo"
    (repo / "docker").mkdir(parents=True)
    shutil.copy2(REPO / "docker" / "make-bake-context.sh", repo / "docker")
    (repo / "README.md").write_text("a repository\n")
    git("init", "-q", ".", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-qm", "files", cwd=repo)
    clone = repo / "docker" / "bake" / "clone"
    clone.mkdir(parents=True)
    git("init", "-q", ".", cwd=clone)
    git("remote", "add", "origin", f"https://user:{TOKEN}@huggingface.co/org/model", cwd=clone)
    (clone / "config.json").write_text("{}\n")
    model = tmp_path / "model"
    shutil.copytree(clone, model)  # a model folder given to the script that is a clone too

    context = tmp_path / "context"
    subprocess.run([str(repo / "docker" / "make-bake-context.sh"), str(context), str(model)], check=True,
                   capture_output=True)
    copied = sorted(str(path.relative_to(context)) for path in context.rglob("*"))
    assert "docker/bake/clone/config.json" in copied and "docker/bake/model/config.json" in copied, copied
    assert not [name for name in copied if ".git" in Path(name).parts], copied
    assert not [path for path in context.rglob("*") if path.is_file() and TOKEN.encode() in path.read_bytes()]


def test_dockerignore_leaves_out_git_folders_at_any_depth():
    """`docker build .` with a clone under docker/bake/ (the README's offline bake) sends the context
    through .dockerignore: `.git` alone matches only the top folder. tests/container builds an image
    with such a clone and looks for it inside."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    assert "**/.git" in patterns
