"""A short threaded numpy copy probe of the CPU's memory bandwidth (GB/s), cached per CPU model."""

from __future__ import annotations

import time
from pathlib import Path

from localllm import config
from localllm.config import state
from localllm.machine.cpu import CPUInfo, probe_cpu

TYPE_CHECKING = False  # typing costs ~3 ms of `localllm hw`'s start-up; mypy reads it as true
if TYPE_CHECKING:
    from typing import Any

CACHE_NAME = "bandwidth.json"
BLOCK_BYTES = 64 * 1024 * 1024  # per thread: far beyond any L3, so DRAM is what gets timed


def cache_path() -> Path:
    return config.home() / "cache" / CACHE_NAME


def _load() -> dict[str, Any]:
    return state.read_json(cache_path())


def cpu_key(cpu: CPUInfo | None = None) -> str:
    """The cache key: CPU model and usable cores (a container with 2 of 16 cores measures less)."""
    if cpu is None:
        cpu = probe_cpu()
    return f"{cpu.model} x{cpu.usable_cores}"


def cached_entry(cpu: CPUInfo | None = None) -> dict[str, Any] | None:
    """The last measurement on this CPU: {"gb_s", "threads", "seconds", "measured_at"}."""
    entry = _load().get(cpu_key(cpu))
    return entry if isinstance(entry, dict) and entry.get("gb_s") else None


def cached_bandwidth(cpu: CPUInfo | None = None) -> float | None:
    entry = cached_entry(cpu)
    return float(entry["gb_s"]) if entry else None


def probe(threads: int | None = None, seconds: float = 0.6) -> tuple[float, int]:
    """(GB/s, threads): every thread copies its own 64 MiB block over and over; bytes read plus
    bytes written over the wall time of the best round. numpy releases the GIL inside copyto."""
    import threading

    import numpy as np

    from localllm.config import default_threads

    n = max(1, threads or default_threads())
    count = BLOCK_BYTES // 8
    srcs = [np.ones(count, dtype=np.float64) for _ in range(n)]
    dsts = [np.ones(count, dtype=np.float64) for _ in range(n)]  # written now: no page faults timed
    best = 0.0
    deadline = time.perf_counter() + seconds

    def copy(i: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        np.copyto(dsts[i], srcs[i])
        np.copyto(srcs[i], dsts[i])

    while True:
        barrier = threading.Barrier(n + 1)
        workers = [threading.Thread(target=copy, args=(i, barrier), daemon=True) for i in range(n)]
        for w in workers:
            w.start()
        barrier.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t0
        best = max(best, n * 4 * BLOCK_BYTES / elapsed / 1e9)  # 2 copies x (read + write)
        if time.perf_counter() > deadline:
            return best, n


def measured_bandwidth(refresh: bool = False, cpu: CPUInfo | None = None) -> float:
    """GB/s from the cache, or measured now (~0.6 s) and cached for next time. `cpu`: a CPUInfo."""
    key = cpu_key(cpu)
    if not refresh:
        entry = _load().get(key)
        if isinstance(entry, dict) and entry.get("gb_s"):
            return float(entry["gb_s"])
    t0 = time.perf_counter()
    gb_s, threads = probe()
    entry = {"gb_s": round(gb_s, 2), "threads": threads, "seconds": round(time.perf_counter() - t0, 2),
             "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:  # under the file's lock: other CPUs' entries written meanwhile are kept
        state.update(cache_path(), lambda data: {**data, key: entry}, indent=1, sort_keys=True)
    except OSError:
        pass  # a read-only home: the number is still right, just not kept
    return gb_s
