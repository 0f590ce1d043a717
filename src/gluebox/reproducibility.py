"""``--reproducibility``: ``fast`` (this machine's fastest kernels) or ``portable`` (the same numbers
on every x86-64 CPU with AVX2, whoever made it).

What moves a run's numbers between machines was measured by ``benchmarks/reproducibility_probe.py``
(docs/reproducibility.md): the instruction set of ATen's own kernels (``ATEN_CPU_CAPABILITY``),
of oneDNN's (``ONEDNN_MAX_CPU_ISA``), MKL's code path for the matrix multiplies (``MKL_CBWR``), the
thread count, and the AdamW implementation. ``portable`` pins each of them:

- the three variables, to AVX2 for ATen and oneDNN (every x86-64 CPU since 2013-2015 has it, Intel's
  and AMD's) and ``COMPATIBLE`` for MKL (its conditional numerical reproducibility: one code path
  on every CPU, Intel's or not). They are read when torch first runs a kernel, so :func:`pin` must
  run before that; the ``gluebox`` command does it first thing, from the command line or the run's
  recorded mode (:mod:`gluebox.cli`). Processes the run starts (DDP) inherit them;
- one torch thread per process unless ``--num_threads`` says otherwise (the number is written to
  ``config.yaml``, and runs are identical only at the same thread count);
- the for-loop AdamW (PyTorch's reference implementation on every device) instead of the fused one.

Deterministic algorithms are on in both modes. :func:`check_pinned` refuses a portable run whose
kernels were not pinned in time (torch ran a kernel first) or that this CPU cannot honour (no AVX2).
This module imports nothing heavy: the command line calls it before torch is imported.
"""

from __future__ import annotations

import os

from gluebox.errors import GlueboxError

MODES = ("fast", "portable")
FAST, PORTABLE = MODES
VARIABLE = "GLUEBOX_REPRODUCIBILITY"
"""Replaces the default of ``--reproducibility`` (like the other ``GLUEBOX_*`` variables)."""

PORTABLE_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",  # oneDNN's older name for the same setting
    "MKL_CBWR": "COMPATIBLE",
}
"""Set (over whatever the environment had) before torch runs its first kernel."""

PORTABLE_CAPABILITY = "AVX2"
"""What ``torch.backends.cpu.get_cpu_capability()`` must say in a portable run."""

PORTABLE_THREADS = 1
"""Torch threads per process of a portable run unless ``--num_threads`` is given."""

RECORDED_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR",
                      "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that bear on the numbers; ``environment.json`` records them (null when unset)."""


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise GlueboxError(f"--reproducibility must be one of {', '.join(MODES)}, got '{mode}'")
    return mode


def pin(mode: str) -> None:
    """Set the portable mode's variables in this process (and so in the processes it starts)."""
    if check_mode(mode) == PORTABLE:
        os.environ.update(PORTABLE_ENVIRONMENT)


def pinned_variables() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in RECORDED_VARIABLES}


def check_pinned(mode: str) -> None:
    """Refuse a portable run whose kernels are not the pinned ones, in one line.

    Call it once torch is imported: it asks torch which instruction set its kernels run with.
    """
    if mode != PORTABLE:
        return
    import torch

    wrong = {k: os.environ.get(k) for k, v in PORTABLE_ENVIRONMENT.items() if os.environ.get(k) != v}
    capability = torch.backends.cpu.get_cpu_capability()
    if wrong:
        settings = " ".join(f"{k}={v}" for k, v in PORTABLE_ENVIRONMENT.items())
        raise GlueboxError(
            f"--reproducibility portable needs {settings} set before torch runs, but "
            f"{', '.join(f'{k} is {v}' for k, v in wrong.items())}; run it through the gluebox command, or set them"
        )
    if capability != PORTABLE_CAPABILITY:
        reason = ("torch ran a kernel before the mode was set" if capability.startswith("AVX512") or "AMX" in capability
                  else "this CPU has no AVX2" if capability == "DEFAULT" else "this CPU is not x86-64 with AVX2")
        raise GlueboxError(
            f"--reproducibility portable needs torch's kernels at AVX2, but they run at {capability} ({reason}); "
            "use --reproducibility fast"
        )
