"""A record of the machine and software a run used, for environment.json.

It holds every setting that bears on a run's numbers to the last bit (``gluebox compare`` reads it
to say whether two runs could be identical): the CPU's vendor, model and instruction sets, the
instruction set torch's kernels actually run with, the variables that pin ATen, oneDNN and MKL
(:mod:`gluebox.reproducibility`), the math libraries' versions, threads, device and packages, and
the data files' fingerprints (``data``, written by the recipe); and the C allocator the process ran
with (:mod:`gluebox.allocator`: it moves memory and speed, not numbers).

The top level describes the run's first process. Each ``--resume`` adds its own description to
``resumes``, with the changes it went on despite (``accepted_changes``, :func:`changes`): a resume
is checked against the process the run last ran in (:func:`last_session`).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from gluebox import allocator, resources

PACKAGES = ("gluebox", "torch", "transformers", "tokenizers", "lightning", "torchmetrics", "datasets", "wandb", "numpy",
            "peft", "cmeel-mimalloc")
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "neon", "asimd")


def _cpu_info() -> tuple[str, str | None, list[str]]:
    model, vendor, flags = platform.processor() or platform.machine(), None, []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("vendor_id", "CPU implementer") and vendor is None:
                    vendor = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model, vendor, [flag for flag in ISA_FLAGS if flag in flags]


def math_libraries(config_text: str) -> dict[str, str | None]:
    """MKL's and oneDNN's versions as torch was built with them (from ``torch.__config__.show()``)."""
    found: dict[str, str | None] = {"mkl": None, "onednn": None}
    for line in config_text.splitlines():
        line = line.strip(" -")
        if "Math Kernel Library Version" in line:
            found["mkl"] = line.split("Version", 1)[1].split("-", 1)[0].strip()
        elif line.startswith(("Intel(R) MKL-DNN", "oneDNN", "Intel(R) oneDNN")):
            found["onednn"] = line.split("(Git", 1)[0].split()[-1]
    return found


def describe(device: str) -> dict:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    from gluebox.reproducibility import pinned_variables

    cpu_model, vendor, isa = _cpu_info()
    running_allocator = allocator.active()
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "cpu_model": cpu_model,
        "cpu_vendor": vendor,
        "cpu_isa": isa,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "variables": pinned_variables(),
        "allocator": running_allocator,
        "mimalloc_purge_delay_ms": os.environ.get("MIMALLOC_PURGE_DELAY") if running_allocator == allocator.MIMALLOC else None,
        "math_libraries": math_libraries(torch.__config__.show()),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cpus_available": resources.available_cpus(),
        "cpu_quota": resources.cpu_quota(),
        "torch_threads": torch.get_num_threads(),
        "memory_total_bytes": resources.total_memory(),
        "memory_limit_bytes": resources.memory_limit(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


RESULT_PACKAGES = ("torch", "transformers", "gluebox")
"""Packages whose version changes a run's numbers (kernels, model code, gluebox's maths)."""


def last_session(environment: dict) -> dict:
    """The description of the process the run last ran in: its last resume's, else its first process's."""
    resumes = environment.get("resumes") or []
    return resumes[-1] if resumes else environment


def with_resume(environment: dict, description: dict, accepted: list[str], resumed: str) -> dict:
    """``environment`` with this resume's ``description`` added (the first process's stays as it was)."""
    entry = {"resumed": resumed, "accepted_changes": accepted} | {k: v for k, v in description.items() if k != "resumes"}
    return environment | {"resumes": [*(environment.get("resumes") or []), entry]}


def _was_now(what: str, before, now) -> str:
    return f"{what} {'none' if before is None else before} is now {'none' if now is None else now}"


def changes(before: dict, now: dict, reproducibility: str) -> list[str]:
    """What differs between two descriptions and changes a run's numbers, one phrase each: the data
    files, the versions of torch, transformers and gluebox, the accelerator, and in fast mode the CPU's
    vendor and instruction set, torch's threads and the variables that pin the kernels' code paths (the portable
    mode gives the same numbers whatever they are). What ``before`` does not record is not compared."""
    found = []
    data_before, data_now = before.get("data") or {}, now.get("data") or {}
    for split in [s for s in data_before if s in data_now]:
        was, is_ = data_before[split], data_now[split]
        if {k: v for k, v in was.items() if k != "file"} != {k: v for k, v in is_.items() if k != "file"}:
            where = is_.get("file") or is_.get("dataset") or split
            found.append(f"the {split} data ({where}) changed")
    packages_before, packages_now = before.get("packages") or {}, now.get("packages") or {}
    for name in RESULT_PACKAGES:
        if name in packages_before and packages_before[name] != packages_now.get(name):
            found.append(_was_now(name, packages_before[name], packages_now.get(name)))
    accelerator_before = before.get("gpu") or before.get("device")
    accelerator_now = now.get("gpu") or now.get("device")
    if accelerator_before is not None and accelerator_before != accelerator_now:
        found.append(_was_now("the accelerator", accelerator_before, accelerator_now))
    if reproducibility != "fast":
        return found
    for key, what in (("cpu_vendor", "the CPU vendor"), ("torch_cpu_capability", "the CPU's instruction set"),
                      ("torch_threads", "torch's thread count")):
        if before.get(key) is not None and before.get(key) != now.get(key):
            found.append(_was_now(what, before.get(key), now.get(key)))
    if before.get("cpu_isa") is not None and before.get("torch_cpu_capability") == now.get("torch_cpu_capability") \
            and set(before["cpu_isa"]) != set(now.get("cpu_isa") or ()):
        found.append(_was_now("the CPU's instruction set extensions", " ".join(before["cpu_isa"]) or None,
                              " ".join(now.get("cpu_isa") or ()) or None))
    variables_before, variables_now = before.get("variables") or {}, now.get("variables") or {}
    for name in [n for n in variables_before if variables_before[n] != variables_now.get(n)
                 and not n.endswith("_NUM_THREADS")]:  # torch's own thread count is compared above
        found.append(_was_now(name, variables_before[name], variables_now.get(name)))
    return found
