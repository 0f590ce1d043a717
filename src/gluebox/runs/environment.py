"""A record of the machine and software a run used, for environment.json."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from gluebox import resources

PACKAGES = ("gluebox", "torch", "transformers", "tokenizers", "lightning", "torchmetrics", "datasets", "wandb", "numpy",
            "peft")
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "neon", "asimd")


def _cpu_info() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model, [flag for flag in ISA_FLAGS if flag in flags]


def describe(device: str) -> dict:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu_model, isa = _cpu_info()
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "cpu_model": cpu_model,
        "cpu_isa": isa,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
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
