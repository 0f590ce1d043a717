"""What identifies the data a run read, so that a resumed run can tell that it changed.

A local file (a GLUE folder's TSV files, your own ``--train_file`` and ``--validation_file``) is
identified by its size and sha256; the hub dataset by the fingerprint ``datasets`` gives the split
(a hash of the dataset's name, configuration, version and revision, the same on every machine).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gluebox.data.sources import HUB_DATASET


def file_identity(path: str | Path) -> dict:
    """A file's absolute path, size in bytes and sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"file": os.path.abspath(path), "bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def hub_identity(task_name: str, split: str) -> dict:
    """The hub dataset's split and its fingerprint (read from the local cache the split was just loaded into)."""
    identity = {"dataset": f"{HUB_DATASET}/{task_name}", "split": split}
    try:
        import datasets

        identity["fingerprint"] = datasets.load_dataset(HUB_DATASET, task_name, split=split)._fingerprint
    except Exception:  # noqa: BLE001 - the split loaded a moment ago; without its fingerprint, the name must do
        pass
    return identity


def data_identity(task_name: str, sources: dict[str, str]) -> dict[str, dict]:
    """``{split: identity}`` for the splits a run read, given where each came from (``Examples.source``)."""
    return {split: file_identity(source) if Path(source).is_file() else hub_identity(task_name, split)
            for split, source in sources.items()}
