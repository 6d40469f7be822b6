"""VRAM per process through NVML, faked at the library boundary (this machine has no GPU)."""

from __future__ import annotations

import sys
import types

import pytest

from localllm.machine import gpu


@pytest.fixture(autouse=True)
def fresh_state():
    gpu._reset_for_tests()
    yield
    gpu._reset_for_tests()


def fake_nvml(processes_per_device: list[list[tuple[int, int | None]]]) -> types.ModuleType:
    mod = types.ModuleType("pynvml")
    proc = types.SimpleNamespace
    mod.nvmlInit = lambda: None
    mod.nvmlDeviceGetCount = lambda: len(processes_per_device)
    mod.nvmlDeviceGetHandleByIndex = lambda i: i
    mod.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        proc(pid=p, usedGpuMemory=m) for p, m in processes_per_device[h]]
    mod.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []
    mod.nvmlDeviceGetUtilizationRates = lambda h: proc(gpu=37 + h)
    return mod


def test_vram_of_one_pid_summed_over_gpus(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([[(10, 300), (11, 5)], [(10, 200)], [(10, None)]]))
    assert gpu.process_vram_bytes(10) == 500
    assert gpu.process_vram_bytes(99) == 0
    assert gpu.gpu_utilization_percent() == 39
    assert gpu.unavailable_reason() is None


def test_no_nvml_library_is_a_normal_case(monkeypatch) -> None:
    mod = types.ModuleType("pynvml")

    def fail():
        raise OSError("NVML Shared Library Not Found")

    mod.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    assert gpu.process_vram_bytes(1) is None
    assert gpu.gpu_utilization_percent() is None
    assert "NVML Shared Library Not Found" in (gpu.unavailable_reason() or "")
