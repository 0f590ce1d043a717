"""``best_model/`` (and ``best_adapter/`` for LoRA): the best model in Hugging Face format with its model card, swapped in whole."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
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
    """``write`` a folder beside ``target``, fsync it, then put it in place of ``target`` in one step.

    ``target`` always names a complete folder: the old one until the swap, the new one after. On
    Linux the two trade places with one ``renameat2(RENAME_EXCHANGE)`` (ext4, xfs, btrfs, tmpfs,
    overlayfs), and the old one is removed after. Where the file system cannot exchange, the old
    folder is renamed aside (``.NAME.old``) and the new one renamed in; a failure between the two
    renames puts the old one back, and a kill between them is repaired by the next swap, which
    first renames ``.NAME.old`` back when ``target`` is missing.

    A full disk is a one-line error (``kept`` says what is left) and leaves the previous folder in place.
    """
    old = target.with_name(f".{target.name}.old")
    if not target.exists() and old.is_dir():
        os.replace(old, target)  # a kill between the two renames of a swap without exchange
    for stale in target.parent.glob(f".{target.name}.*"):  # what a killed swap left
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with disk_full_is_an_error(target, kept):
            write(tmp)
            for file in tmp.rglob("*"):
                if file.is_file():
                    with open(file, "rb") as handle:
                        os.fsync(handle.fileno())
        if not target.exists():
            os.replace(tmp, target)
        elif exchange(tmp, target):
            fsync_folder(target.parent)
            shutil.rmtree(tmp)  # the old folder now
        else:
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            fsync_folder(target.parent)
            shutil.rmtree(old, ignore_errors=True)
        fsync_folder(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


AT_FDCWD = -100
RENAME_EXCHANGE = 2
"""``renameat2``'s flag (linux/fs.h): swap the two paths."""


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``).

    False, with nothing changed, where the C library, kernel or file system cannot.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library older than glibc 2.28, or without it (musl < 1.2.4)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(error, os.strerror(error), str(b))
