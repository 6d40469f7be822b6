"""`localllm hw`: what this machine has for running models, as a card or JSON."""

from __future__ import annotations

import json

GiB = 1024**3


def register(sub) -> None:
    p = sub.add_parser("hw", help="show this machine's CPU, memory, disk and GPUs (--json for scripts)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--bandwidth", action="store_true",
                   help="measure the CPU memory bandwidth now (~1 s) instead of using the cached figure")
    p.set_defaults(func=run)


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GiB:.1f} GiB"


def card(info) -> str:
    """A plain-text card; every line starts with its label so it reads well in any terminal."""
    cpu, mem = info.cpu, info.memory
    lines = [f"CPU      {cpu.model} ({cpu.arch})",
             f"         {cpu.physical_cores} physical / {cpu.logical_cores} logical cores"
             + (f", {cpu.usable_cores} usable here" if cpu.usable_cores != cpu.logical_cores else ""),
             f"         ISA: {' '.join(cpu.flags) or 'none of the SIMD flags llama.cpp uses'}",
             f"RAM      {_gib(mem.available_bytes)} available of {_gib(mem.total_bytes)}"
             + (f" ({mem.limit_note})" if mem.limit_note else ""),
             f"Swap     {_gib(mem.swap_free_bytes)} free of {_gib(mem.swap_total_bytes)}"
             if mem.swap_total_bytes else "Swap     none"]
    bw = info.cpu_bandwidth_gb_s
    lines.append(f"Memory   {bw:.1f} GB/s measured (numpy copy probe)" if bw
                 else "Memory   bandwidth not measured yet: localllm hw --bandwidth")
    if info.disk:
        lines.append(f"Disk     {_gib(info.disk.free_bytes)} free at {info.disk.path}")
    if not info.gpus:
        lines.append(f"GPU      {info.gpu_reason or 'none found'}")
    for gpu in info.gpus:
        lines.append(f"GPU {gpu.index}    {gpu.name}")
        lines.append(f"         {_gib(gpu.free_bytes)} free of {_gib(gpu.total_bytes)}"
                     + (" (unified memory)" if gpu.unified_memory else f", {_gib(gpu.used_bytes)} used"))
        extra = []
        if gpu.compute_capability:
            extra.append(f"compute {gpu.compute_capability}")
        if gpu.bandwidth_gb_s:
            bus = f" ({gpu.bus_width_bits}-bit @ {gpu.mem_clock_mhz} MHz)" if gpu.bus_width_bits else ""
            extra.append(f"{gpu.bandwidth_gb_s:.0f} GB/s{bus}")
        if gpu.utilization_pct is not None:
            extra.append(f"{gpu.utilization_pct}% busy")
        if extra:
            lines.append("         " + ", ".join(extra))
        for proc in gpu.processes:
            used = _gib(proc.used_bytes) if proc.used_bytes else "? (not reported)"
            lines.append(f"         pid {proc.pid} {proc.name}: {used}")
        for note in gpu.notes:
            lines.append(f"         note: {note}")
    if info.driver_version or info.cuda_version:
        lines.append(f"Driver   {info.driver_version or '?'}, CUDA {info.cuda_version or '?'}")
    return "\n".join(lines)


def run(args) -> int:
    from localllm import bandwidth, hardware

    info = hardware.probe(measure_bandwidth=args.bandwidth)
    if info.cpu_bandwidth_gb_s is None:  # first run on this machine: measure once, cached afterwards
        info.cpu_bandwidth_gb_s = round(bandwidth.measured_bandwidth(cpu=info.cpu), 2)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print(card(info))
    return 0
