"""RAM, swap and physical cores read straight from Linux's /proc and /sys, the files psutil reads.

Why not psutil here: importing it costs ~20 ms (socket, enum, its named tuples), a third of
`localllm hw`'s start-up against PRODUCT.md's 2x-of-bare-python target. Each reader returns None
where the files are missing or unreadable (macOS, Windows, a locked-down container), and the caller
asks psutil then."""

from __future__ import annotations

import os

MEMINFO = "/proc/meminfo"
CPU_SYS = "/sys/devices/system/cpu"


def meminfo(path: str = MEMINFO) -> dict[str, int] | None:
    """/proc/meminfo's fields in bytes ("MemTotal", "MemAvailable", "SwapTotal", ...)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return fields or None


def memory(path: str = MEMINFO) -> tuple[int, int, int, int] | None:
    """(total, available, swap total, swap free) in bytes, as psutil's virtual_memory and
    swap_memory give them on a kernel with MemAvailable (3.14 and later); None otherwise."""
    fields = meminfo(path)
    need = ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree")
    if not fields or any(name not in fields for name in need):
        return None
    return fields["MemTotal"], fields["MemAvailable"], fields["SwapTotal"], fields["SwapFree"]


def physical_cores(root: str = CPU_SYS) -> int | None:
    """Distinct cores by the kernel's topology files (SMT siblings share one), psutil's first way."""
    try:
        names = [n for n in os.listdir(root) if n.startswith("cpu") and n[3:].isdigit()]
    except OSError:
        return None
    cores: set[bytes] = set()
    for leaf in ("core_cpus_list", "thread_siblings_list"):  # the second is the older name
        for name in names:
            try:
                with open(os.path.join(root, name, "topology", leaf), "rb") as f:
                    cores.add(f.read().strip())
            except OSError:
                continue
        if cores:
            return len(cores)
    return None
