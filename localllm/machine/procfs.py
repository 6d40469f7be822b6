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


CGROUP_ROOT = "/sys/fs/cgroup"
UNLIMITED = 2**60  # cgroup v1 writes "no limit" as 9223372036854771712; v2 as "max"
# (limit, usage, stat) files of each cgroup version; usage less the stat's inactive file pages is what
# `docker stats` shows: page cache the kernel reclaims before it kills anything
V2 = ("memory.max", "memory.current", "memory.stat", "inactive_file")
V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat", "total_inactive_file")


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            raw = f.read().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None  # "max" (v2's no limit) included


def _stat(path: str, key: str) -> int:
    try:
        with open(path, "rb") as f:
            for line in f.read().decode("ascii", "replace").splitlines():
                name, _, value = line.partition(" ")
                if name == key and value.strip().isdigit():
                    return int(value)
    except OSError:
        pass
    return 0


def _candidates(cgroup_file: str, root: str) -> list[tuple[str, tuple[str, str, str, str]]]:
    """The folders whose memory limit binds this process, tightest first or not: its own cgroup and
    every ancestor, for v2 (the "0::" line) and v1 (the line naming the memory controller). A path that
    is not under `root` (a container that sees only its own cgroup) still has root itself."""
    try:
        with open(cgroup_file, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    found: list[tuple[str, tuple[str, str, str, str]]] = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            base, files = root, V2
        elif "memory" in controllers.split(","):
            base, files = os.path.join(root, "memory"), V1
        else:
            continue
        parts = [p for p in path.split("/") if p and p not in (".", "..")]
        for depth in range(len(parts), -1, -1):
            found.append((os.path.join(base, *parts[:depth]), files))
    return found


def cgroup_memory(cgroup_file: str = "/proc/self/cgroup", root: str = CGROUP_ROOT) -> tuple[int, int] | None:
    """(limit, usage) in bytes of the tightest cgroup memory limit on this process (v2 or v1, its own
    cgroup or an ancestor's), usage less reclaimable file pages; None where no limit is set. /proc/meminfo
    shows the host's RAM inside a container: this is what the container may really use."""
    tightest: tuple[int, int] | None = None
    for folder, (limit_name, usage_name, stat_name, inactive) in _candidates(cgroup_file, root):
        limit = _read_int(os.path.join(folder, limit_name))
        if limit is None or limit >= UNLIMITED or (tightest is not None and limit >= tightest[0]):
            continue
        usage = _read_int(os.path.join(folder, usage_name)) or 0
        tightest = (limit, max(0, usage - _stat(os.path.join(folder, stat_name), inactive)))
    return tightest
