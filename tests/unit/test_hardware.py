"""Hardware probe: NVML faked only at the library boundary (a `pynvml` module with recorded values),
the rest real (this machine's /proc, psutil, disk, numpy bandwidth probe, the CLI in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from localllm.machine import bandwidth, gpu, hardware
from localllm.machine import cpu as cpu_probe

MiB = 1024**2

# Values recorded from real cards (nvidia-smi -q / NVML) for the fake library to return.
RTX_4090 = dict(name="NVIDIA GeForce RTX 4090", total=24564 * MiB, free=23880 * MiB, used=684 * MiB,
                util=3, cc=(8, 9), bus=384, clock=10501)
RTX_3070 = dict(name="NVIDIA GeForce RTX 3070", total=8192 * MiB, free=7604 * MiB, used=588 * MiB,
                util=11, cc=(8, 6), bus=256, clock=7001)


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - the binding's own name
    def __str__(self) -> str:
        return "Not Supported"


def fake_nvml(cards: list[dict], procs: dict[int, list] | None = None, broken: set[str] = frozenset(),
              init_error: Exception | None = None) -> types.ModuleType:
    """A pynvml stand-in; functions named in `broken` raise NVMLError like a failing driver."""
    mod = types.ModuleType("pynvml")
    ns = types.SimpleNamespace
    mod.NVMLError = NVMLError
    mod.NVML_CLOCK_MEM = 2
    procs = procs or {}

    def init():
        if init_error is not None:
            raise init_error

    funcs = {
        "nvmlInit": init,
        "nvmlDeviceGetCount": lambda: len(cards),
        "nvmlDeviceGetHandleByIndex": lambda i: i,
        "nvmlDeviceGetName": lambda h: cards[h]["name"],
        "nvmlDeviceGetMemoryInfo": lambda h: ns(total=cards[h]["total"], free=cards[h]["free"],
                                                used=cards[h]["used"]),
        "nvmlDeviceGetUtilizationRates": lambda h: ns(gpu=cards[h]["util"], memory=0),
        "nvmlDeviceGetCudaComputeCapability": lambda h: cards[h]["cc"],
        "nvmlDeviceGetMemoryBusWidth": lambda h: cards[h]["bus"],
        "nvmlDeviceGetMaxClockInfo": lambda h, kind: cards[h]["clock"] if kind == 2 else 2520,
        "nvmlDeviceGetComputeRunningProcesses": lambda h: procs.get(h, []),
        "nvmlDeviceGetGraphicsRunningProcesses": lambda h: [],
        "nvmlSystemGetDriverVersion": lambda: "550.54.14",
        "nvmlSystemGetCudaDriverVersion": lambda: 12040,
    }
    for name, fn in funcs.items():
        if name in broken or "*" in broken and name != "nvmlInit":
            def fail(*args, _name=name):
                raise NVMLError_NotSupported() if "BusWidth" in _name else NVMLError("Unknown Error")
            fn = fail
        setattr(mod, name, fn)
    return mod


@pytest.fixture(autouse=True)
def fresh_nvml():
    gpu._reset_for_tests()
    yield
    gpu._reset_for_tests()


def probe_with(monkeypatch, module) -> hardware.HardwareInfo:
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return hardware.probe()


def test_zero_gpus_is_a_reason_not_an_error(monkeypatch) -> None:
    info = probe_with(monkeypatch, fake_nvml([]))
    assert info.gpus == []
    assert info.gpu_reason == "No NVIDIA GPU: NVML found no device"
    assert info.driver_version == "550.54.14"


def test_one_gpu_every_field(monkeypatch) -> None:
    me = os.getpid()
    holder = types.SimpleNamespace(pid=me, usedGpuMemory=1536 * MiB)
    info = probe_with(monkeypatch, fake_nvml([RTX_4090], procs={0: [holder]}))
    assert info.gpu_reason is None and info.has_cuda
    (card,) = info.gpus
    assert card.name == "NVIDIA GeForce RTX 4090"
    assert (card.total_bytes, card.free_bytes, card.used_bytes) == (24564 * MiB, 23880 * MiB, 684 * MiB)
    assert card.compute_capability == "8.9" and card.utilization_pct == 3
    assert card.bandwidth_gb_s == pytest.approx(1008.1, abs=0.1)  # 10501 MHz x 2 x 384 bit / 8
    assert info.cuda_version == "12.4"
    assert [(p.pid, p.used_bytes) for p in card.processes] == [(me, 1536 * MiB)]
    assert card.processes[0].name  # psutil found this very process
    assert card.notes == []


def test_two_gpus_and_one_unsupported_call_loses_nothing_else(monkeypatch) -> None:
    info = probe_with(monkeypatch, fake_nvml([RTX_4090, RTX_3070], broken={"nvmlDeviceGetMemoryBusWidth"}))
    assert [g.name for g in info.gpus] == [RTX_4090["name"], RTX_3070["name"]]
    second = info.gpus[1]
    assert second.free_bytes == 7604 * MiB and second.compute_capability == "8.6"
    assert second.bandwidth_gb_s is None
    assert second.notes == ["nvmlDeviceGetMemoryBusWidth: Not Supported"]


def test_a_broken_driver_gives_one_line(monkeypatch) -> None:
    info = probe_with(monkeypatch, fake_nvml([RTX_4090], broken={"*"}))
    assert info.gpus == []
    assert info.gpu_reason == "No NVIDIA GPU: the driver failed (nvmlDeviceGetCount: Unknown Error)"
    assert "\n" not in info.gpu_reason


def test_a_driver_failing_per_device_still_lists_the_device(monkeypatch) -> None:
    broken = {n for n in dir(fake_nvml([])) if n.startswith("nvmlDevice") and n not in
              ("nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex")}
    info = probe_with(monkeypatch, fake_nvml([RTX_3070], broken=broken))
    (card,) = info.gpus
    assert card.name == "GPU 0" and card.total_bytes == 0 and len(card.notes) >= 5


def test_driver_not_loaded_at_init(monkeypatch) -> None:
    err = NVMLError("Driver Not Loaded")
    info = probe_with(monkeypatch, fake_nvml([RTX_4090], init_error=err))
    assert info.gpus == [] and info.gpu_reason == "No NVIDIA GPU: the NVIDIA driver is installed but not loaded"


def test_no_driver_installed(monkeypatch) -> None:
    err = NVMLError("NVML Shared Library Not Found")
    info = probe_with(monkeypatch, fake_nvml([], init_error=err))
    assert info.gpu_reason == "No NVIDIA GPU: no NVIDIA driver here (the NVML library is not installed)"


def test_no_nvml_library_at_all(monkeypatch) -> None:
    info = probe_with(monkeypatch, None)  # None in sys.modules: `import pynvml` raises ImportError
    assert info.gpus == []
    assert "nvidia-ml-py is not installed" in info.gpu_reason


def test_nvml_that_lies_is_clamped_with_a_note(monkeypatch) -> None:
    liar = dict(RTX_3070, free=9000 * MiB, used=300 * MiB)  # free > total: seen on some vGPUs
    info = probe_with(monkeypatch, fake_nvml([liar]))
    (card,) = info.gpus
    assert card.free_bytes == 8192 * MiB - 300 * MiB
    assert card.free_bytes <= card.total_bytes
    assert "clamped" in card.notes[0] and "free 8.79 GiB" in card.notes[0]


def test_this_machine_is_described(monkeypatch) -> None:
    info = hardware.probe()
    assert info.cpu.logical_cores >= info.cpu.physical_cores >= 1
    assert 0 < info.memory.available_bytes <= info.memory.total_bytes
    assert info.disk is not None and info.disk.free_bytes > 0
    again = hardware.HardwareInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info


def test_arm_features_map_to_neon() -> None:
    cpu = hardware.probe_cpu()
    assert cpu.flags == [f for f in cpu_probe.X86_FLAGS if f in cpu.flags] or "neon" in cpu.flags
    fake = {"Features": "fp asimd evtstrm aes asimddp sve i8mm", "CPU implementer": "0x41"}
    original = cpu_probe.read_cpuinfo
    try:
        cpu_probe.read_cpuinfo = lambda: fake
        arm = hardware.probe_cpu()
    finally:
        cpu_probe.read_cpuinfo = original
    assert {"neon", "dotprod", "i8mm", "sve"} <= set(arm.flags)


def test_disk_of_a_missing_models_folder_uses_its_parent(tmp_path) -> None:
    disk = hardware.probe_disk(tmp_path / "not" / "yet" / "there")
    assert disk is not None and disk.path == str(tmp_path)


@pytest.mark.slow  # the real probe copies memory on every core (~0.7 s each time): not the quick tier
def test_bandwidth_probe_measures_and_caches(monkeypatch) -> None:
    gb_s, threads = bandwidth.probe(seconds=0.05)
    assert gb_s > 0.5 and threads >= 1
    first = bandwidth.measured_bandwidth(refresh=True)
    assert bandwidth.cache_path().exists()

    def no_measuring(*a, **k):
        raise AssertionError("the cached figure should be used")

    monkeypatch.setattr(bandwidth, "probe", no_measuring)
    assert bandwidth.measured_bandwidth() == pytest.approx(first, abs=0.01)
    assert bandwidth.cached_entry()["threads"] >= 1


def test_hw_json_subprocess_parses_and_stays_light(tmp_path, monkeypatch) -> None:
    # a figure cached in a home of its own: the child reads it instead of measuring (the real probe is
    # the slow tier's, above), and the run's own cache keeps its real figure
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    monkeypatch.setattr(bandwidth, "probe", lambda *a, **k: (42.0, 2))
    bandwidth.measured_bandwidth(refresh=True)
    code = ("import json, sys\nfrom localllm.cli import main as cli\nrc = cli.main(['hw', '--json'])\n"
            "print('@@MODULES@@' + json.dumps(sorted(sys.modules)))\nsys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report, _, modules = out.stdout.partition("@@MODULES@@")
    data = json.loads(report)
    assert data["cpu"]["logical_cores"] >= 1 and data["memory"]["total_bytes"] > 0
    assert data["cpu_bandwidth_gb_s"] == 42.0
    loaded = {m.split(".")[0] for m in json.loads(modules)}
    assert not loaded & {"textual", "llama_cpp", "torch", "transformers"}


def test_hw_card_reads_well(capsys, monkeypatch) -> None:
    from localllm.cli import main as cli

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([RTX_4090]))
    monkeypatch.setattr(bandwidth, "cached_bandwidth", lambda cpu=None: 30.5)
    assert cli.main(["hw"]) == 0
    text = capsys.readouterr().out
    assert "GPU 0    NVIDIA GeForce RTX 4090" in text
    assert "1008 GB/s (384-bit @ 10501 MHz)" in text and "30.5 GB/s measured" in text
