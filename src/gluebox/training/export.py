"""``best_model/`` (and ``best_adapter/`` for LoRA): the best model in Hugging Face format with its model card, swapped in whole."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from gluebox.runs.directory import BEST_ADAPTER, BEST_MODEL, RunDirectory, disk_full_is_an_error, fsync_folder


def export_best(model, tokenizer, run: RunDirectory, card: str | None = None) -> None:
    """``best_model/``: a plain model that ``AutoModelForSequenceClassification.from_pretrained`` loads
    (a LoRA model with its adapters merged into the weights); for LoRA also ``best_adapter/``, the
    adapter and head alone in peft's format (``PeftModel.from_pretrained`` on the base model)."""
    from gluebox.training.adapters import is_lora, merged_state_dict, plain_model

    lora = is_lora(model)
    export_hf_model(plain_model(model), tokenizer, run.file(BEST_MODEL),
                    state_dict=merged_state_dict(model) if lora else None, card=card)
    if lora:  # no embedding layer is adapted: peft need not ask the hub whether the vocabulary changed
        swap_in(run.file(BEST_ADAPTER), lambda folder: model.save_pretrained(folder, save_embedding_layers=False),
                "the previous best adapter is kept")


def export_hf_model(model, tokenizer, target: Path, state_dict: dict | None = None, card: str | None = None) -> None:
    """``save_pretrained`` of model (with ``state_dict`` as its weights, when given) and tokenizer
    into ``target``, with ``card`` as its ``README.md`` (the model card), swapped in by renames."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder, state_dict=state_dict)
        tokenizer.save_pretrained(folder)
        if card is not None:
            (folder / "README.md").write_text(card, encoding="utf-8")

    swap_in(target, write, "the previous best model is kept")


def swap_in(target: Path, write: Callable[[Path], None], kept: str) -> None:
    """``write`` a folder beside ``target``, fsync it, then rename it into place.

    A full disk is a one-line error (``kept`` says what is left) and leaves the previous folder in place.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with disk_full_is_an_error(target, kept):
            write(tmp)
            for file in tmp.rglob("*"):
                if file.is_file():
                    with open(file, "rb") as handle:
                        os.fsync(handle.fileno())
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        fsync_folder(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
