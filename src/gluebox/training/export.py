"""``best_model/``: the best model in Hugging Face format with its model card, swapped in whole."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from gluebox.runs.directory import disk_full_is_an_error, fsync_folder


def export_hf_model(model, tokenizer, target: Path, card: str | None = None) -> None:
    """``save_pretrained`` of model and tokenizer into ``target``, with ``card`` as its ``README.md``
    (the model card), swapped in by renames.

    A full disk is a one-line error and leaves the previous export in place.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with disk_full_is_an_error(target, "the previous best model is kept"):
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if card is not None:
                (tmp / "README.md").write_text(card, encoding="utf-8")
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
