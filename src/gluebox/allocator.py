"""Which C allocator holds the process's memory, and when freed memory goes back to the OS.

Tensor buffers come from the C library's ``malloc``. Training batches of varying length free
and allocate buffers of ever-changing sizes, and glibc's heap keeps what they free resident and
fragmented: over an epoch of DistilBERT-shaped weights on MRPC (whole batches) training peaked at
3366 MiB under glibc and at 2720 MiB under mimalloc, in the same time (docs/performance.md).

**``--allocator mimalloc``** (the default on Linux) runs gluebox under mimalloc, Microsoft's
general-purpose allocator, from the ``cmeel-mimalloc`` wheel. It reuses freed blocks of any
size with little fragmentation and keeps them for reuse instead of faulting fresh pages in.
An allocator can only be chosen before Python starts, so the ``gluebox`` command re-executes
itself once, with ``LD_PRELOAD`` naming the library (:func:`reexecute_under`); the process
it starts (DDP workers included) re-executes the same way. ``MIMALLOC_PURGE_DELAY`` is set to
:data:`PURGE_DELAY_MS` unless the environment already sets it. Nothing else in the process
changes and the maths is the same: tensors are 64-byte aligned whoever allocates them.

**``--allocator system``** keeps the C library's ``malloc`` (glibc on Linux), the way before.

**Returning freed memory at once** (``--release_memory``, under ``--memory_budget`` and with
LoRA: :func:`return_freed_memory_to_os`): under mimalloc, the purge delay drops to 0; under
glibc, the mmap threshold is fixed at 128 KiB (by default it rises to the size of each large
block freed, up to 32 MiB, so later buffers come from the heap, where freed space fragments),
so every tensor buffer is its own mapping, unmapped on free. Both trade speed (page faults) for
memory. Measured figures are in docs/performance.md.

This module imports nothing heavy: the command line calls it before torch is imported.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

from gluebox.errors import GlueboxError

ALLOCATORS = ("mimalloc", "system")
MIMALLOC, SYSTEM = ALLOCATORS
VARIABLE = "GLUEBOX_ALLOCATOR"
"""Replaces the default of ``--allocator`` (like the other ``GLUEBOX_*`` variables)."""

PURGE_DELAY_MS = "-1"
"""mimalloc's ``MIMALLOC_PURGE_DELAY``: how long freed memory stays committed for reuse before it
goes back to the OS; -1 keeps it (the process's peak is what it reached anyway). Measured on
DistilBERT-shaped weights: docs/performance.md."""

MI_OPTION_PURGE_DELAY = 15
"""``mi_option_purge_delay``'s number in mimalloc 3.4's ``mi_option_t`` (mimalloc.h); the wheel is pinned."""

REEXECUTED = "GLUEBOX_REEXECUTED"
"""Set in the re-executed process (with the ``LD_PRELOAD`` value to restore), so it never loops."""

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number for the mmap threshold (from malloc.h)."""

MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's default starting value, made fixed."""


def check_allocator(name: str) -> str:
    if name not in ALLOCATORS:
        raise GlueboxError(f"--allocator must be one of {', '.join(ALLOCATORS)}, got '{name}'")
    return name


def mimalloc_library() -> Path | None:
    """The ``cmeel-mimalloc`` wheel's shared library, or None (not installed, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    from importlib import metadata

    try:
        files = metadata.files("cmeel-mimalloc") or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.startswith("libmimalloc.so."):
            path = Path(file.locate())
            if path.is_file():
                return path.resolve()
    return None


def active() -> str:
    """The allocator this process runs with: ``mimalloc`` when its library is loaded, else ``system``."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            if any("libmimalloc" in line for line in maps):
                return MIMALLOC
    except OSError:
        pass
    return SYSTEM


PRELOAD_SEPARATORS = frozenset(" :")
"""The characters the loader splits ``LD_PRELOAD`` on: a path holding one cannot be named in it."""

LINK_FOLDERS: tuple[str | None, ...] = (None, "/tmp")
"""Where :func:`preload_name` may put its link, in this order (None: ``$TMPDIR``, as :mod:`tempfile` finds it)."""


def preload_name(library: Path) -> Path | None:
    """``library`` as ``LD_PRELOAD`` can name it: itself, or, when its path holds a space or a colon (an
    install path such as ``/home/Ann Lee/.venv``), a symbolic link to it in a private folder of this
    user (``gluebox-preload-UID``, mode 700, in :data:`LINK_FOLDERS`) whose path holds neither; None where
    there is no such folder."""
    if not PRELOAD_SEPARATORS.intersection(str(library)):
        return library
    import hashlib
    import stat
    import tempfile

    link_name = f"{hashlib.sha256(str(library).encode()).hexdigest()[:16]}-{library.name}"
    for base in dict.fromkeys(base or tempfile.gettempdir() for base in LINK_FOLDERS):
        folder = Path(base) / f"gluebox-preload-{os.getuid()}"
        if PRELOAD_SEPARATORS.intersection(str(folder)):
            continue
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            found = os.lstat(folder)
            if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
                continue  # not a folder of this user's alone: a link there could be swapped
            link = folder / link_name
            if not (link.is_symlink() and os.readlink(link) == str(library)):
                tmp = folder / f".{link_name}.{os.getpid()}"
                tmp.unlink(missing_ok=True)
                os.symlink(library, tmp)
                os.replace(tmp, link)
            return link
        except OSError:
            continue
    return None


def environment_for(name: str, environment: dict[str, str]) -> dict[str, str]:
    """``environment`` for a new process that runs under ``name`` (unchanged for ``system``, or where
    mimalloc is not available: the process then keeps the system allocator, and ``environment.json`` says so).

    A library path that ``LD_PRELOAD`` cannot name is preloaded through :func:`preload_name`'s link; where
    there is none, the system allocator stays and one line on stderr says why."""
    library = mimalloc_library() if name == MIMALLOC else None
    if library is None:
        return dict(environment)
    named = preload_name(library)
    if named is None:
        print(f"gluebox: note: using the system allocator: mimalloc's path ({library}) holds a space or a colon, "
              "which LD_PRELOAD cannot name, and no private temporary folder could hold a link to it "
              "(pass --allocator system to skip this)", file=sys.stderr, flush=True)
        return dict(environment)
    library = named
    previous = environment.get("LD_PRELOAD", "")
    preloaded = environment | {
        "LD_PRELOAD": f"{library} {previous}".strip(),
        "MIMALLOC_PURGE_DELAY": environment.get("MIMALLOC_PURGE_DELAY", PURGE_DELAY_MS),
    }
    return preloaded if starts(preloaded) else dict(environment)


def starts(environment: dict[str, str]) -> bool:
    """Whether Python starts with ``environment``, quietly: the preloaded library and the libraries it needs load.

    A library the loader cannot find (mimalloc needs ``libatomic.so.1``, which slim images such as
    ``python:3.11-slim`` lack) would make every process started with it fail before Python runs; one it
    cannot open would print the loader's error on every command.
    """
    import subprocess

    try:
        started = subprocess.run([sys.executable, "-S", "-c", ""], env=environment, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return started.returncode == 0 and not started.stderr.strip()


def reexecute_under(name: str) -> None:
    """Start this command again under ``name`` when that is not the allocator this process runs with.

    Returns without doing anything when the process already runs with it, when it was already
    re-executed once, or when mimalloc is not available or cannot load here (the process then
    keeps the system allocator, and ``environment.json`` says so). Otherwise it does not return.
    """
    if name != MIMALLOC or active() == MIMALLOC or REEXECUTED in os.environ:
        return
    environment = environment_for(name, dict(os.environ))
    if environment.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        return  # mimalloc cannot load here (see :func:`starts`)
    environment[REEXECUTED] = os.environ.get("LD_PRELOAD", "")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)


def settle_after_reexecution() -> bool:
    """In the re-executed process: restore the ``LD_PRELOAD`` the user had, so that the programs this
    one starts (git, docker, Ray's daemons) are not preloaded; gluebox processes re-execute themselves.

    Returns whether this process is the re-executed one (then it must not re-execute again, even
    if the loader ignored the preloaded library).
    """
    if REEXECUTED not in os.environ:
        return False
    previous = os.environ.pop(REEXECUTED)
    if previous:
        os.environ["LD_PRELOAD"] = previous
    else:
        os.environ.pop("LD_PRELOAD", None)
    return True


def return_freed_memory_to_os() -> bool:
    """Make freed memory go back to the OS at once; False where neither mimalloc nor glibc is in charge."""
    if active() == MIMALLOC:
        try:
            ctypes.CDLL(None).mi_option_set(MI_OPTION_PURGE_DELAY, ctypes.c_long(0))
        except (OSError, AttributeError):
            return False
        return True
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
