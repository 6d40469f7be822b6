"""localllm doctor: the binding/GPU mismatch, torch's CUDA build read from its files, settings, and the
real command on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localllm.config.settings import Settings
from localllm.machine.hardware import HardwareInfo
from localllm.runtime import doctor
from localllm.runtime.binding import BindingCaps

MACHINES = Path(__file__).resolve().parents[2] / "localllm" / "data" / "machines"
NAMES = ["llama.cpp binding", "torch CUDA", "CPU kernels", "embedded model", "GPTQ environment", "disk",
         "settings"]


def machine(name: str) -> HardwareInfo:
    path = MACHINES / f"{name}.json"
    assert path.exists(), path
    return HardwareInfo.from_dict(json.loads(path.read_text()))


FULL = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 |"  # a build with every feature the profiles' CPUs have


def cpu_caps(**kw) -> BindingCaps:
    return BindingCaps(version="0.3.36", gpu_offload=False, system_info="CPU : SSE3 = 1 | AVX2 = 1 |", **kw)


def by_name(checks) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_cpu_binding_on_a_gpu_host_fails_with_the_cuda_rebuild() -> None:
    hw = machine("gpu-24gb")
    checks = by_name(doctor.run_checks(hw=hw, caps=cpu_caps(), settings=Settings()))
    assert list(checks) == NAMES
    binding = checks["llama.cpp binding"]
    assert binding.status == "fail"
    assert "NVIDIA GeForce RTX 4090, 24.0 GiB" in binding.summary and "0.3.36" in binding.summary
    assert "-DGGML_CUDA=on" in binding.fix and "pip install --force-reinstall" in binding.fix
    assert sys.executable in binding.fix
    assert doctor.gpu_binding_mismatch(hw, cpu_caps()) == binding


def test_offload_build_on_gpu_host_and_cpu_build_without_gpu_are_ok() -> None:
    gpu_caps = BindingCaps(version="0.3.36", gpu_offload=True, system_info=FULL)
    assert doctor.gpu_binding_mismatch(machine("gpu-24gb"), gpu_caps) is None
    assert doctor.check_binding(machine("gpu-24gb"), gpu_caps).status == "ok"
    cpu_host = machine("cpu-16gb")
    assert not cpu_host.gpus
    assert doctor.gpu_binding_mismatch(cpu_host, cpu_caps()) is None
    check = doctor.check_binding(cpu_host, cpu_caps())
    assert check.status == "ok" and "0.3.36" in check.summary and check.fix == ""


def test_apple_gpu_with_a_cpu_binding_asks_for_metal() -> None:
    hw = machine("cpu-16gb")
    hw.gpus = [doctor_gpu(vendor="apple", name="Apple M2")]
    check = doctor.gpu_binding_mismatch(hw, cpu_caps())
    assert check is not None and check.status == "fail" and "-DGGML_METAL=on" in check.fix


def doctor_gpu(**kw):
    from localllm.machine.hardware import GPUInfo

    return GPUInfo(index=0, **kw)


def test_binding_that_cannot_import_fails() -> None:
    check = doctor.check_binding(machine("cpu-16gb"), BindingCaps(error="llama-cpp-python is not installed"))
    assert check.status == "fail" and "pip install --force-reinstall llama-cpp-python" in check.fix


def test_failed_test_decode_is_not_a_broken_binding() -> None:
    caps = BindingCaps(version="0.3.36", system_info=FULL,
                       error="the probe could not run: no embedded model")
    assert doctor.check_binding(machine("cpu-16gb"), caps).status == "ok"
    assert doctor.check_binding(machine("gpu-24gb"), caps).status == "fail"  # still a CPU-only build
    kernels = doctor.check_cpu_kernels(machine("cpu-16gb"), caps, Settings())
    assert kernels.status == "warn" and "--refresh" in kernels.fix


def fake_torch(tmp_path: Path, cuda: str) -> Path:
    path = tmp_path / "torch" / "version.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"from typing import Optional\n__version__ = '2.13.0+x'\ndebug = False\n"
                    f"cuda: Optional[str] = {cuda}\nhip: Optional[str] = None\n")
    return path


def test_torch_cpu_build_on_a_gpu_host_warns(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(doctor, "torch_version_file", lambda: fake_torch(tmp_path, "None"))
    check = doctor.check_torch(machine("gpu-24gb"))
    assert check.status == "warn"
    assert "CPU build" in check.summary and "12.8" in check.summary
    assert "--index-url https://download.pytorch.org/whl/cu128" in check.fix
    # The same torch without a GPU is the normal case.
    assert doctor.check_torch(machine("cpu-16gb")).status == "ok"


def test_torch_cuda_build(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(doctor, "torch_version_file", lambda: fake_torch(tmp_path, "'12.8'"))
    on_gpu = doctor.check_torch(machine("gpu-24gb"))
    assert on_gpu.status == "ok" and "CUDA 12.8 build" in on_gpu.summary and on_gpu.fix == ""
    no_gpu = doctor.check_torch(machine("cpu-16gb"))
    assert no_gpu.status == "ok" and "no NVIDIA GPU here: runs on the CPU" in no_gpu.summary


def test_torch_not_installed_is_ok(monkeypatch) -> None:
    monkeypatch.setattr(doctor, "torch_version_file", lambda: None)
    check = doctor.check_torch(machine("gpu-24gb"))
    assert check.status == "ok" and "not installed" in check.summary


def test_cpu_kernels_warn_for_a_build_without_the_cpus_avx512() -> None:
    hw = machine("gpu-24gb")  # its CPU has avx2 and avx512f; the build lists only AVX2
    check = doctor.check_cpu_kernels(hw, cpu_caps(), Settings())
    assert check.status == "warn" and "AVX512" in check.summary and "--no-cache-dir" in check.fix
    full = BindingCaps(version="0.3.36", system_info=FULL, extra_bufts_ok=True)
    assert doctor.check_cpu_kernels(hw, full, Settings()).status == "ok"


def test_cpu_kernels_report_extra_buffers_off_after_sigill() -> None:
    caps = BindingCaps(version="0.3.36", system_info=FULL, extra_bufts_ok=False,
                       extra_bufts_note="died of SIGILL in a test decode")
    check = doctor.check_cpu_kernels(machine("gpu-24gb"), caps, Settings())
    assert check.status == "warn" and "SIGILL" in check.summary and "extra_buffers = on" in check.fix


def test_bad_settings_file_warns(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    from localllm.config.settings import settings_path

    assert doctor.check_settings().status == "ok"  # no file yet: defaults
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text("n_ctx = [not toml\n")
    check = doctor.check_settings()
    assert check.status == "warn" and str(settings_path()) in check.fix
    settings_path().write_text('threads = "many"\n')
    assert doctor.check_settings().status == "warn"


def test_disk_thresholds() -> None:
    from localllm.machine.hardware import DiskInfo

    hw = machine("cpu-16gb")
    for free_gib, status in ((0.5, "fail"), (5, "warn"), (50, "ok")):
        hw.disk = DiskInfo("/models", int(free_gib * 2**30), 100 * 2**30)
        assert doctor.check_disk(hw).status == status


def _doctor_json() -> tuple[dict, float, int]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "localllm", "doctor", "--json"], capture_output=True,
                         text=True, timeout=120)
    return json.loads(out.stdout), time.perf_counter() - start, out.returncode


@pytest.mark.slow
def test_doctor_json_on_this_machine_is_fast_once_warm() -> None:
    _doctor_json()  # the first run probes the binding in a worker and caches the answer
    data, seconds, rc = _doctor_json()
    assert [c["name"] for c in data["checks"]] == NAMES
    assert all(c["status"] in ("ok", "warn", "fail") for c in data["checks"])
    assert data["ok"] == (not any(c["status"] == "fail" for c in data["checks"]))
    assert rc == (0 if data["ok"] else 1)
    assert seconds < 2.0, f"doctor took {seconds:.2f} s with a warm cache"
