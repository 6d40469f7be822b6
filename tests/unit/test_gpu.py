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
    assert gpu.unavailable_reason() is None


def test_gpu_utilization_is_of_the_gpus_the_process_uses(monkeypatch) -> None:
    """Utilization 37 + device index: pid 10 holds memory on GPUs 0 and 1 (the busiest: 38), pid 11 on
    GPU 0 only; pid 12 holds none, so no GPU's business is counted as its own."""
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([[(10, 300), (11, 5)], [(10, 200)], [(13, 1)]]))
    assert gpu.process_gpu(10) == (500, 38)
    assert gpu.process_gpu(11) == (5, 37)
    assert gpu.process_gpu(12) == (0, None)


def test_a_board_without_utilization_still_reports_vram(monkeypatch) -> None:
    mod = fake_nvml([[(10, 300)]])

    def not_supported(handle):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    mod.nvmlDeviceGetUtilizationRates = not_supported
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    assert gpu.process_gpu(10) == (300, None)


def test_no_nvml_library_is_a_normal_case(monkeypatch) -> None:
    mod = types.ModuleType("pynvml")

    def fail():
        raise OSError("NVML Shared Library Not Found")

    mod.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    assert gpu.process_vram_bytes(1) is None
    assert gpu.process_gpu(1) is None
    assert "NVML Shared Library Not Found" in (gpu.unavailable_reason() or "")
