"""The only module that opens NVML (nvidia-ml-py): per-process VRAM, utilisation, and the handle
localllm.machine.hardware reads the GPUs through. No GPU or no driver is the normal case: None."""

from __future__ import annotations

import _thread
import os
import sys

TYPE_CHECKING = False  # typing costs ~3 ms of `localllm hw`'s start-up; mypy reads it as true
if TYPE_CHECKING:
    from typing import Any

_lock = _thread.allocate_lock()  # threading.Lock itself, without importing threading (~1 ms)
_state: dict[str, Any] = {}  # "nvml": the module once initialised, "reason": why not


def _no_nvidia_driver() -> bool:
    """Linux without the NVIDIA kernel driver (and not WSL, whose driver lives in the Windows host)."""
    return (sys.platform == "linux" and not os.path.exists("/proc/driver/nvidia")
            and not os.path.exists("/dev/nvidiactl") and not os.path.exists("/usr/lib/wsl/lib"))


def open_nvml() -> Any:
    """Initialise NVML once; return the module (pynvml: untyped), or None with the reason kept."""
    with _lock:
        if "nvml" in _state:
            return _state["nvml"]
        if "pynvml" not in sys.modules and _no_nvidia_driver():
            _state["nvml"] = None  # skip importing and initialising NVML (~15 ms of every `localllm hw`)
            _state["reason"] = "NVML unavailable: no NVIDIA kernel driver is loaded (no /proc/driver/nvidia)"
            return None
        try:
            import pynvml  # provided by nvidia-ml-py

            pynvml.nvmlInit()
            _state["nvml"] = pynvml
        except Exception as exc:  # no library, no driver, no device: all normal
            _state["nvml"] = None
            _state["reason"] = f"NVML unavailable: {exc}"
        return _state["nvml"]


def unavailable_reason() -> str | None:
    open_nvml()
    reason: str | None = _state.get("reason")
    return reason


def process_vram_bytes(pid: int) -> int | None:
    """VRAM held by `pid` summed over all GPUs; None when there is no NVIDIA GPU."""
    sample = process_gpu(pid)
    return sample[0] if sample is not None else None


def process_gpu(pid: int) -> tuple[int, int | None] | None:
    """(VRAM held by `pid` summed over all GPUs, the utilization % of the busiest GPU it holds memory
    on). NVML's utilization is the device's (the share of the last sample period a kernel ran), so a GPU
    `pid` does not use is not counted; None for it where `pid` holds none or the driver does not say.
    None for the whole where there is no NVIDIA GPU."""
    nvml = open_nvml()
    if nvml is None:
        return None
    total, busiest = 0, None
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            procs = list(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
            procs += list(nvml.nvmlDeviceGetGraphicsRunningProcesses(handle))
            mine = [p for p in procs if p.pid == pid]
            if not mine:
                continue
            total += sum(int(p.usedGpuMemory or 0) for p in mine)
            try:
                util = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:  # NVML_ERROR_NOT_SUPPORTED on some boards and vGPUs
                continue
            busiest = util if busiest is None else max(busiest, util)
    except Exception:
        return None
    return total, busiest


def _reset_for_tests() -> None:
    with _lock:
        _state.clear()
