"""Which folders are gluebox's: the marker it writes first, new folders claimed atomically, and
``--overwrite`` that removes only gluebox's own files.

Every folder gluebox makes (a run directory, a sweep's folder, a GLUE suite's folder) gets
``.gluebox.json`` before anything else: the kind of folder, a run id (a UUID), the gluebox
command, version, host and working folder that made it, and when. gluebox treats a folder as
its own only when it holds that marker, or, for folders made before the marker existed, the
files that only gluebox writes together (:attr:`FolderKind.legacy`: a run's ``status.json``,
``config.yaml`` and ``task.json``).

A new folder is claimed before any expensive work starts:

- a default name (``<task>-<model>-<time>``) is made with ``mkdir`` (never ``exist_ok``), so two
  processes started in the same second get two folders: the second adds ``-2``, the third ``-3``;
- a folder the user named is made, or, when it exists and is empty, taken by creating its marker
  exclusively (a hard link, which fails when another process got there first);
- with ``--overwrite``, an earlier folder of the same kind is kept as it is until the work is
  about to write (:meth:`Claim.take`); then only the entries gluebox writes there
  (:attr:`FolderKind.owned`) are removed. Anything else in it is a one-line refusal, before
  anything is deleted, that names what would have gone. The folder itself is never removed, so
  ``--output_dir .`` or ``~`` can lose nothing of yours.

A start refused before its work begins (bad data, a model that does not load) gives the claim
back (:meth:`Claim.release`): the folder it made is removed, an empty folder it took is empty
again, and an earlier run it was to replace is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gluebox import __version__
from gluebox.errors import GlueboxError
from gluebox.runs.directory import CONFIG, RUN_FILES, STATUS, TASK, atomic_write_json, check_writable, temp_file_beside

MARKER = ".gluebox.json"
"""The marker: what made the folder (see the module docstring)."""
SHOWN = 4
"""At most this many entries are named in a message; the rest are counted."""


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder gluebox makes, and the entries it writes in one."""

    name: str
    """Stored in the marker: ``run``, ``sweep``, ``glue suite``."""
    noun: str
    """What messages call it: ``run directory``, ``sweep folder``, ``glue suite``."""
    owned: frozenset[str]
    """The entries gluebox writes at the top of such a folder (with the marker)."""
    legacy: frozenset[str]
    """Entries that, all present, mark such a folder made before gluebox wrote a marker."""
    taken: Callable[[Path], str]
    """The error line for an existing folder of this kind where a new one was asked for (without --overwrite)."""

    def owns(self, name: str) -> bool:
        """True for an entry gluebox writes in such a folder, or a temporary of one (``.NAME.*``:
        an atomic write's temp file, a ``best_model/`` swap's folders)."""
        names = self.owned | {MARKER}
        return name in names or any(name.startswith(f".{own}.") for own in names)

    def foreign(self, folder: Path) -> list[str]:
        """The entries of ``folder`` that gluebox did not write, sorted."""
        return sorted(entry.name for entry in folder.iterdir() if not self.owns(entry.name))

    def is_kind_of(self, folder: Path) -> bool:
        """True if ``folder`` is one of these: its marker says so, or (no marker) it holds the legacy entries."""
        marker = read_marker(folder)
        if marker is not None:
            return marker.get("kind") == self.name
        return not (folder / MARKER).exists() and all((folder / name).exists() for name in self.legacy)


def read_marker(folder: Path) -> dict | None:
    """The folder's marker, or None when it has none (or one that is not gluebox's)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("gluebox") == 1 else None


def run_id(folder: Path) -> str | None:
    """The id in the folder's marker (None for a folder made before the marker)."""
    marker = read_marker(folder)
    return marker.get("id") if marker is not None else None


_command: list[str] | None = None


def record_command(argv: list[str]) -> None:
    """The gluebox command this process runs (:func:`gluebox.cli.main`), for the markers it writes."""
    global _command
    _command = list(argv)


def new_marker(kind: FolderKind) -> dict[str, Any]:
    """A marker for a new folder of ``kind``: a new id, and what made it, where and when (``command``
    is None in a process that is not running a gluebox command: a sweep's trial in a Ray worker)."""
    argv = _command
    return {
        "gluebox": 1,
        "kind": kind.name,
        "id": str(uuid.uuid4()),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(["gluebox", *argv]) if argv is not None else None,
        "version": __version__,
        "host": socket.gethostname(),
        "cwd": os.getcwd(),
    }


def names(entries: list[str]) -> str:
    """``a, b, c, d and 3 more``."""
    shown = ", ".join(entries[:SHOWN])
    return shown + (f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")


def check_folder(path: Path, kind: FolderKind, overwrite: bool) -> bool:
    """Check, without changing anything, that a new folder of ``kind`` may be written at ``path``.

    True when ``path`` holds an earlier folder of ``kind`` that ``--overwrite`` will replace.
    """
    if not path.exists():
        return False
    label = f"--output_dir {path}"
    if not path.is_dir():
        raise GlueboxError(f"{label} is a file, not a gluebox {kind.noun}; choose another --output_dir")
    content = sorted(entry.name for entry in path.iterdir())
    if not content:
        return False
    if not kind.is_kind_of(path):
        marker = read_marker(path)
        what = (f"a gluebox {marker.get('kind')} folder, not a {kind.noun}" if marker is not None
                else f"not a gluebox {kind.noun} (it holds {names(content)})")
        if overwrite:
            raise GlueboxError(f"{label} is {what}; --overwrite replaces only a {kind.noun} gluebox made, "
                               "so nothing was deleted; choose another --output_dir")
        raise GlueboxError(f"{label} already exists and is {what}; choose another --output_dir")
    if not overwrite:
        raise GlueboxError(kind.taken(path))
    if path.resolve() in (Path.home().resolve(), Path(path.resolve().anchor)):
        raise GlueboxError(f"--overwrite never replaces {path}; choose another --output_dir")
    refuse_foreign(path, kind)
    return True


def refuse_foreign(path: Path, kind: FolderKind) -> None:
    """``--overwrite``: a one-line refusal, naming them, when ``path`` holds entries gluebox did not write."""
    foreign = kind.foreign(path)
    if foreign:
        raise GlueboxError(f"--overwrite would delete {names(foreign)} from the {kind.noun} {path}, which gluebox did "
                           "not write there; nothing was deleted; move them out, or choose another --output_dir")


@dataclass
class Claim:
    """A folder this process claimed for a new run (or sweep, or suite)."""

    path: Path
    kind: FolderKind
    marker: dict[str, Any]
    replaces: bool = False
    """An earlier folder of the kind is there: its files are removed by :meth:`take`, not before."""
    made: Path | None = None
    """The outermost folder this claim created (``release`` removes it again when it is empty)."""
    taken: bool = field(default=False, init=False)

    @property
    def id(self) -> str:
        return self.marker["id"]

    def take(self) -> None:
        """The work starts writing: an earlier folder's own files go (the marker last), this claim's marker stays."""
        if self.taken:
            return
        self.taken = True
        if not self.replaces:
            return
        refuse_foreign(self.path, self.kind)  # again: something may have been put there since the check
        for entry in sorted(self.path.iterdir()):
            if entry.name != MARKER:
                remove(entry)
        write_marker(self.path, self.marker, replace=True)

    def release(self) -> None:
        """Give the folder back as it was, when the work is refused before it wrote anything (no-op after take)."""
        if self.taken or self.replaces:
            return
        self.taken = True  # once
        with contextlib.suppress(OSError):
            for entry in list(self.path.iterdir()):  # the folder was new or empty: what gluebox wrote is the claim's
                if self.kind.owns(entry.name):
                    remove(entry)
            if self.made is not None:
                folder = self.path
                while True:
                    folder.rmdir()  # only when empty
                    if folder == self.made:
                        break
                    folder = folder.parent

    @contextlib.contextmanager
    def released_on_error(self):
        """Release the claim when the block fails before :meth:`take`."""
        try:
            yield self
        except BaseException:
            self.release()
            raise


def remove(entry: Path) -> None:
    """A file, link or folder (a link is removed, never followed)."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink(missing_ok=True)


def write_marker(folder: Path, marker: dict[str, Any], replace: bool = False) -> bool:
    """Write ``folder``'s marker: atomically; unless ``replace``, only if it has none (False when it has one)."""
    target = folder / MARKER
    if replace:
        atomic_write_json(target, marker)
        return True
    tmp = Path(temp_file_beside(target))
    try:
        tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        try:
            os.link(tmp, target)  # atomic, and fails if the marker exists
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(tmp.read_text(encoding="utf-8"))
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _make(path: Path) -> Path | None:
    """``mkdir`` of ``path`` and its missing parents; the outermost folder made (None if ``path`` existed).

    Raises FileExistsError when another process made ``path`` first.
    """
    outermost = path
    while not outermost.parent.exists():
        outermost = outermost.parent
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except FileExistsError:
        raise
    except OSError as error:
        raise GlueboxError(f"cannot create {path}: {error.strerror}") from None
    return outermost


def claim(path: str | Path, kind: FolderKind, overwrite: bool = False) -> Claim:
    """Claim the folder the user named for a new folder of ``kind`` (see the module docstring)."""
    path = Path(path)
    replaces = check_folder(path, kind, overwrite)
    check_writable(path)
    marker = new_marker(kind)
    if replaces:
        return Claim(path, kind, marker, replaces=True)
    try:
        made = _make(path)
    except FileExistsError:  # an empty folder, or one another process made since the check
        made = None
    if not write_marker(path, marker):
        # Another process took it between the check and now: the check says what it is now.
        check_folder(path, kind, overwrite=False)
        raise GlueboxError(f"--output_dir {path} was taken by another process; choose another --output_dir")
    return Claim(path, kind, marker, made=made)


def claim_new_name(parent: str | Path, stem: str, kind: FolderKind) -> Claim:
    """Claim ``parent/stem`` for a new folder of ``kind``, or ``stem-2``, ``stem-3``... when taken."""
    parent = Path(parent)
    check_writable(parent)
    number = 1
    while True:
        path = parent / (stem if number == 1 else f"{stem}-{number}")
        try:
            made = _make(path)
        except FileExistsError:
            number += 1
            continue
        marker = new_marker(kind)
        write_marker(path, marker)
        return Claim(path, kind, marker, made=made)


def _run_taken(path: Path) -> str:
    try:
        status = json.loads((path / STATUS).read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    if status == "complete":
        return (f"run directory {path} already exists and is complete; pass --overwrite to replace it, "
                "or choose another --output_dir")
    return (f"run directory {path} already exists; pass --resume {path} to continue it, --overwrite to replace it, "
            "or choose another --output_dir")


RUN = FolderKind("run", "run directory", RUN_FILES, frozenset({STATUS, CONFIG, TASK}), _run_taken)
"""A run directory (``gluebox train``)."""
