"""A record of the machine and software a run used, for environment.json.

It holds every setting that bears on a run's numbers to the last bit (``gluebox compare`` reads it
to say whether two runs could be identical): the CPU's vendor, model and instruction sets, the
instruction set torch's kernels actually run with, the variables that pin ATen, oneDNN and MKL
(:mod:`gluebox.reproducibility`), the math libraries' versions, threads, device and packages; and the
C allocator the process ran with (:mod:`gluebox.allocator`: it moves memory and speed, not numbers).
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
