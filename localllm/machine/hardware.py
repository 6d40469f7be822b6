"""What this machine has for running models: CPU, memory, disk, NVIDIA GPUs (NVML), Apple unified memory."""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from localllm.config.paths import hf_hub_cache
from localllm.machine import bandwidth, procfs
from localllm.machine.cpu import CPUInfo, machine, probe_cpu, sysctl

TYPE_CHECKING = False  # typing costs ~3 ms of `localllm hw`'s start-up; mypy reads it as true
if TYPE_CHECKING:
    from typing import Any

GiB = 1024**3

# Apple Silicon memory bandwidth (GB/s, Apple's figures): the chip name is all the OS tells us.
APPLE_BANDWIDTH = {"M1": 68, "M1 Pro": 200, "M1 Max": 400, "M1 Ultra": 800, "M2": 100, "M2 Pro": 200,
                   "M2 Max": 400, "M2 Ultra": 800, "M3": 100, "M3 Pro": 150, "M3 Max": 400, "M3 Ultra": 819,
                   "M4": 120, "M4 Pro": 273, "M4 Max": 546}


@dataclass
class MemoryInfo:
    total_bytes: int
    available_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int
    limit_note: str = ""  # e.g. a container limit lower than the host's RAM


@dataclass
class DiskInfo:
    path: str  # where models are stored (the Hugging Face cache), or its nearest existing parent
    free_bytes: int
    total_bytes: int


@dataclass
class GPUProcess:
    pid: int
    name: str
    used_bytes: int | None  # None: the driver does not say (e.g. inside a container)


@dataclass
class GPUInfo:
    index: int
    name: str
    vendor: str = "nvidia"  # "nvidia" | "apple"
    total_bytes: int = 0
    free_bytes: int = 0
    used_bytes: int = 0
    utilization_pct: int | None = None
    compute_capability: str | None = None
    bus_width_bits: int | None = None
    mem_clock_mhz: int | None = None
    bandwidth_gb_s: float | None = None
    unified_memory: bool = False
    processes: list[GPUProcess] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # NVML calls that failed or lied


@dataclass
class HardwareInfo:
    cpu: CPUInfo
    memory: MemoryInfo
    disk: DiskInfo | None
    gpus: list[GPUInfo] = field(default_factory=list)
    gpu_reason: str | None = None  # one line: why there is no usable NVIDIA GPU
    driver_version: str | None = None
    cuda_version: str | None = None
    cpu_bandwidth_gb_s: float | None = None  # measured (bandwidth.py), None until measured
    platform: str = sys.platform

    @property
    def has_cuda(self) -> bool:
        return any(g.vendor == "nvidia" for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareInfo:
        """The inverse of to_dict: recorded machine profiles are stored this way."""
        gpus = [GPUInfo(**{**g, "processes": [GPUProcess(**p) for p in g.get("processes", [])]})
                for g in data.get("gpus", [])]
        disk = DiskInfo(**data["disk"]) if data.get("disk") else None
        rest = {k: v for k, v in data.items() if k not in ("cpu", "memory", "disk", "gpus")}
        return cls(cpu=CPUInfo(**data["cpu"]), memory=MemoryInfo(**data["memory"]), disk=disk,
                   gpus=gpus, **rest)


def probe_memory() -> MemoryInfo:
    read = procfs.memory()
    if read is None:  # not Linux: psutil asks the OS
        import psutil

        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        read = int(vm.total), int(vm.available), int(sw.total), int(sw.free)
    mem = MemoryInfo(*read)
    limit = procfs.cgroup_memory()
    if limit and limit[0] < mem.total_bytes:  # /proc/meminfo shows the host: the container is smaller
        mem.total_bytes = limit[0]
        mem.available_bytes = max(0, min(mem.available_bytes, limit[0] - limit[1]))
        mem.limit_note = f"container (cgroup) memory limit {limit[0] / GiB:.1f} GiB"
    return mem


def probe_disk(path: Path | None = None) -> DiskInfo | None:
    """Free space where models are stored; the cache may not exist yet, so its nearest parent."""
    target = Path(path or hf_hub_cache()).expanduser()
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        usage = shutil.disk_usage(target)
    except OSError:
        return None
    return DiskInfo(str(target), int(usage.free), int(usage.total))


def probe_apple(mem: MemoryInfo) -> GPUInfo | None:
    """Apple Silicon: the GPU shares RAM; Metal lets a process use about 3/4 of it by default."""
    if not (sys.platform == "darwin" and machine() == "arm64"):
        return None
    brand = sysctl("machdep.cpu.brand_string") or "Apple Silicon"
    chip = brand.replace("Apple", "").strip()
    usable = int(mem.total_bytes * 0.75)
    return GPUInfo(index=0, name=f"{brand} GPU (Metal)", vendor="apple", total_bytes=usable,
                   free_bytes=min(usable, mem.available_bytes), used_bytes=0,
                   bandwidth_gb_s=APPLE_BANDWIDTH.get(chip), unified_memory=True,
                   notes=["unified memory: the GPU budget is ~75% of RAM, shared with the CPU"])


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _why_no_nvml(reason: str) -> str:
    """NVML's own words turned into one line a user understands."""
    if "No module named" in reason or "import of pynvml" in reason:
        return "No NVIDIA GPU: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    if "Library Not Found" in reason or "libnvidia-ml" in reason:
        return "No NVIDIA GPU: no NVIDIA driver here (the NVML library is not installed)"
    if "Driver Not Loaded" in reason:
        return "No NVIDIA GPU: the NVIDIA driver is installed but not loaded"
    return f"No NVIDIA GPU: {reason.removeprefix('NVML unavailable: ')}"


class _Guard:
    """Calls one NVML function; a failure becomes a note, so one unsupported call loses nothing else."""

    def __init__(self, nvml: Any, notes: list[str]) -> None:
        self.nvml, self.notes = nvml, notes

    def __call__(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.nvml, name)(*args)
        except Exception as exc:
            self.notes.append(f"{name}: {_text(exc) or type(exc).__name__}")
            return None


def _gpu_processes(call: _Guard, handle: Any) -> list[GPUProcess]:
    import psutil

    seen: dict[int, GPUProcess] = {}
    for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        for proc in call(fn, handle) or []:
            pid = int(proc.pid)
            used = getattr(proc, "usedGpuMemory", None)
            try:
                name = psutil.Process(pid).name()
            except (psutil.Error, OSError):
                name = "?"  # another container's or user's process
            if pid not in seen:
                seen[pid] = GPUProcess(pid, name, int(used) if used else None)
            elif used:
                seen[pid].used_bytes = (seen[pid].used_bytes or 0) + int(used)
    return sorted(seen.values(), key=lambda p: -(p.used_bytes or 0))


def _memory(gpu_info: GPUInfo, mem: Any) -> None:
    total, free, used = int(mem.total), int(mem.free), int(mem.used)
    if free > total or used > total:  # seen with some drivers and vGPUs: never trust free > total
        gpu_info.notes.append(f"NVML reported free {free / GiB:.2f} GiB / used {used / GiB:.2f} GiB "
                              f"of {total / GiB:.2f} GiB total; clamped")
        used = min(used, total)
        free = total - used
    gpu_info.total_bytes, gpu_info.free_bytes, gpu_info.used_bytes = total, free, used


def probe_gpu(nvml: Any, index: int) -> GPUInfo:
    gpu_info = GPUInfo(index=index, name=f"GPU {index}")
    call = _Guard(nvml, gpu_info.notes)
    handle = call("nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        return gpu_info
    name = call("nvmlDeviceGetName", handle)
    gpu_info.name = _text(name) if name is not None else gpu_info.name
    mem = call("nvmlDeviceGetMemoryInfo", handle)
    if mem is not None:
        _memory(gpu_info, mem)
    util = call("nvmlDeviceGetUtilizationRates", handle)
    gpu_info.utilization_pct = int(util.gpu) if util is not None else None
    cc = call("nvmlDeviceGetCudaComputeCapability", handle)
    gpu_info.compute_capability = f"{cc[0]}.{cc[1]}" if cc else None
    bus = call("nvmlDeviceGetMemoryBusWidth", handle)
    clock = call("nvmlDeviceGetMaxClockInfo", handle, getattr(nvml, "NVML_CLOCK_MEM", 2))
    if bus and clock:  # double data rate: two transfers per clock, bus_bits/8 bytes each
        gpu_info.bus_width_bits, gpu_info.mem_clock_mhz = int(bus), int(clock)
        gpu_info.bandwidth_gb_s = round(clock * 1e6 * 2 * bus / 8 / 1e9, 1)
    gpu_info.processes = _gpu_processes(call, handle)
    return gpu_info


def probe_nvidia(info: HardwareInfo) -> None:
    """Fill info.gpus from NVML, or info.gpu_reason with why there are none."""
    from localllm.machine import gpu

    nvml = gpu.open_nvml()
    if nvml is None:
        info.gpu_reason = _why_no_nvml(gpu.unavailable_reason() or "NVML unavailable")
        return
    notes: list[str] = []
    call = _Guard(nvml, notes)
    count = call("nvmlDeviceGetCount")
    if count is None:
        info.gpu_reason = f"No NVIDIA GPU: the driver failed ({notes[-1]})"
        return
    if count == 0:
        info.gpu_reason = "No NVIDIA GPU: NVML found no device"
    version = call("nvmlSystemGetDriverVersion")
    info.driver_version = _text(version) if version is not None else None
    cuda = call("nvmlSystemGetCudaDriverVersion")
    info.cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None
    info.gpus = [probe_gpu(nvml, i) for i in range(int(count))]


def probe(measure_bandwidth: bool = False) -> HardwareInfo:
    """Look at the machine. Never raises for a missing GPU, driver or library: that is a reason string."""
    mem = probe_memory()
    info = HardwareInfo(cpu=probe_cpu(), memory=mem, disk=probe_disk())
    probe_nvidia(info)
    apple = probe_apple(mem)
    if apple is not None:
        info.gpus.append(apple)
        info.gpu_reason = None
    if measure_bandwidth:
        info.cpu_bandwidth_gb_s = round(bandwidth.measured_bandwidth(refresh=True, cpu=info.cpu), 2)
    else:
        info.cpu_bandwidth_gb_s = bandwidth.cached_bandwidth(info.cpu)
    return info


def card_rows(hw: HardwareInfo, measure_hint: str) -> list[tuple[str, str]]:
    """The hardware card as (label, value) lines, shared by `localllm hw` and the Machine screen; a
    continuation line has an empty label. `measure_hint` says how to measure the bandwidth there."""

    def gib(n: int | None) -> str:
        return "?" if n is None else f"{n / GiB:.1f} GiB"

    cpu, mem = hw.cpu, hw.memory
    rows: list[tuple[str, str]] = [
        ("CPU", f"{cpu.model} ({cpu.arch})"),
        ("", f"{cpu.physical_cores} physical / {cpu.logical_cores} logical cores"
             + (f", {cpu.usable_cores} usable here" if cpu.usable_cores != cpu.logical_cores else "")),
        ("", f"ISA {' '.join(cpu.flags) or 'none of the SIMD flags llama.cpp uses'}"),
        ("RAM", f"{gib(mem.available_bytes)} available of {gib(mem.total_bytes)}"
                + (f" ({mem.limit_note})" if mem.limit_note else "")),
        ("Swap", f"{gib(mem.swap_free_bytes)} free of {gib(mem.swap_total_bytes)}" if mem.swap_total_bytes else "none"),
        ("Disk", f"{gib(hw.disk.free_bytes)} free at {hw.disk.path}" if hw.disk else "unknown"),
        ("Memory", f"{hw.cpu_bandwidth_gb_s:.1f} GB/s measured" if hw.cpu_bandwidth_gb_s
                   else f"bandwidth not measured ({measure_hint})"),
    ]
    if not hw.gpus:
        rows.append(("GPU", hw.gpu_reason or "none found"))
    for gpu in hw.gpus:
        rows.append((f"GPU {gpu.index}", gpu.name))
        rows.append(("", f"VRAM {gib(gpu.free_bytes)} free of {gib(gpu.total_bytes)}"
                         + (" (unified memory)" if gpu.unified_memory else f", {gib(gpu.used_bytes)} used")))
        bus = f" ({gpu.bus_width_bits}-bit @ {gpu.mem_clock_mhz} MHz)" if gpu.bus_width_bits else ""
        extra = [f"compute {gpu.compute_capability}" if gpu.compute_capability else "",
                 f"{gpu.bandwidth_gb_s:.0f} GB/s{bus}" if gpu.bandwidth_gb_s else "",
                 f"{gpu.utilization_pct}% busy" if gpu.utilization_pct is not None else ""]
        if any(extra):
            rows.append(("", ", ".join(e for e in extra if e)))
        rows += [("", f"pid {p.pid} {p.name}: " + (gib(p.used_bytes) if p.used_bytes else "? (not reported)"))
                 for p in gpu.processes]
        rows += [("", f"note: {note}") for note in gpu.notes]
    if hw.driver_version or hw.cuda_version:
        rows.append(("Driver", f"{hw.driver_version or '?'}, CUDA {hw.cuda_version or '?'}"))
    return rows
