"""This machine's CPU: model, cores (those this process may use too) and the ISA features llama.cpp
and the bnb/GPTQ kernels care about. Apart from hardware.py so that bandwidth.py (whose cache is keyed
by the CPU) and hardware.py (which reports the bandwidth) both build on it."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from localllm.machine import procfs

# The ISA features llama.cpp and the bnb/GPTQ kernels care about (/proc/cpuinfo names).
X86_FLAGS = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")
ARM_FLAGS = {"asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "sve": "sve", "sve2": "sve2",
             "bf16": "bf16", "fphp": "fp16"}


@dataclass
class CPUInfo:
    model: str
    arch: str
    physical_cores: int
    logical_cores: int
    usable_cores: int  # what this process may run on (affinity / container)
    flags: list[str] = field(default_factory=list)


def read_cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def sysctl(name: str) -> str:
    import subprocess

    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _physical_cores() -> int | None:
    found = procfs.physical_cores()
    if found:
        return found
    import psutil  # not Linux, or /sys unreadable

    return psutil.cpu_count(logical=False)


def machine() -> str:
    """platform.machine(), without importing platform (~1.5 ms) where os.uname says it."""
    if hasattr(os, "uname"):
        return os.uname().machine
    import platform  # Windows

    return platform.machine()


def probe_cpu() -> CPUInfo:
    info = read_cpuinfo()
    arch = machine()
    model = info.get("model name") or info.get("Hardware") or info.get("Model") or ""
    if sys.platform == "darwin":
        model = sysctl("machdep.cpu.brand_string") or model
    raw = set((info.get("flags") or info.get("Features") or "").split())
    if raw & set(X86_FLAGS):
        flags = [f for f in X86_FLAGS if f in raw]
    else:
        flags = sorted({name for key, name in ARM_FLAGS.items() if key in raw})
    if sys.platform == "darwin" and arch == "arm64":
        flags = sorted(set(flags) | {"neon", "dotprod", "fp16"})  # every Apple Silicon core has these
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        usable = os.cpu_count() or 1
    if not model:
        import platform

        model = platform.processor()
    return CPUInfo(model=model or arch or "unknown", arch=arch,
                   physical_cores=_physical_cores() or usable,
                   logical_cores=os.cpu_count() or usable,  # what psutil.cpu_count() returns too
                   usable_cores=usable, flags=flags)
