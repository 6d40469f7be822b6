"""The load plan: (model, this machine, wishes) -> a placement with the memory each part needs, before
anything loads. GGUF: GPU layers (all, N or 0), context, KV type, llama.cpp's extra CPU buffers;
transformers: device_map and dtype. Every load (TUI, chat, bench, a pick from the Machine screen) asks
it for n_gpu_layers when the user left them on auto, and a plan that does not fit is refused with the
numbers and the nearest plans that do."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localllm.config import AUTO_LAYERS, LoadOptions
from localllm.errors import LocalLLMError
from localllm.machine.estimate import MemoryEstimate, estimate_memory
from localllm.machine.hardware import HardwareInfo
from localllm.machine.recommend import _largest  # the same search the recommendations use
from localllm.machine.weights import kernel_flags
from localllm.models.catalog import ModelSpec
from localllm.models.quants import BITS_PER_WEIGHT as GGUF_BPW

MARGIN = 0.10  # of free memory kept for everything else on the machine
MiB = 2**20


class PlanRefused(LocalLLMError):
    """The model does not fit this machine as asked; the message has the numbers and what would fit."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        super().__init__(plan.refusal())


@dataclass
class LoadPlan:
    model: str
    path: str
    backend: str  # llama_cpp | transformers
    format: str  # gguf | fp32 | fp16 | bnb-nf4 | bnb-int8 | gptq
    quant: str
    context: int
    kv_type: str
    gpu_layers: int  # llama.cpp's n_gpu_layers (-1: all, output head too); transformers: 0 or -1
    layers: int
    placement: str  # full GPU | partial offload | CPU only | does not fit
    estimate: MemoryEstimate
    ram_budget: int
    vram_budget: int
    gpu_name: str = ""
    extra_bufts: bool = True
    device_map: str = ""  # transformers only
    dtype: str = ""
    fits: bool = True
    notes: list[str] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)  # the nearest plans that fit, when this one does not
    # the same placement with `fill` tokens in the context (the estimate above is the full context's)
    at_fill: Callable[[int], MemoryEstimate] | None = field(default=None, repr=False, compare=False)

    def devices(self) -> dict[str, dict[str, int]]:
        """Bytes per device, itemized: what `localllm plan --json` prints."""
        e = self.estimate
        # The weights once: the file pages read at every token, and the anonymous copies llama.cpp made
        # of the tensors it repacked. The pages those copies were read from stay in RSS until the kernel
        # needs the memory: reclaimable, shown apart and not counted in the fit.
        cpu = {"weights": e.weights_cpu, "weights_mapped": e.weights_cpu - e.reclaimable_cpu,
               "weights_repacked": e.reclaimable_cpu, "kv_cache": e.kv_cpu, "compute_buffers": e.compute_cpu,
               "compute_reserved": e.compute_cpu_reserved, "runtime_overhead": e.overhead_cpu}
        cpu["total"] = e.ram_bytes  # what must stay in RAM: the fit is graded on it
        cpu["reclaimable_file_pages"] = e.reclaimable_cpu
        cpu["repack_extra_buffers"] = e.reclaimable_cpu  # the old name of weights_repacked (0.1 JSON)
        cpu["rss_at_full_context"] = e.rss_bytes
        if self.at_fill is not None:  # what `ps` shows after loading, before the context fills
            cpu["rss_at_load"] = self.at_fill(1).rss_bytes
        out = {"cpu": cpu}
        if e.vram_bytes:
            out["gpu0"] = {"weights": e.weights_gpu, "kv_cache": e.kv_gpu, "compute_buffers": e.compute_gpu,
                           "runtime_overhead": e.overhead_gpu, "total": e.vram_bytes}
        return out

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("estimate", "at_fill")}
        data["devices"] = self.devices()
        data["budget"] = {"ram": self.ram_budget, "vram": self.vram_budget}
        return data

    def summary(self) -> str:
        e = self.estimate
        where = {"full GPU": "all layers on the GPU", "partial offload": f"{self.gpu_layers}/{self.layers} "
                 "layers on the GPU", "CPU only": "CPU only"}.get(self.placement, self.placement)
        vram = f", VRAM {e.vram_bytes / MiB:.0f} MiB" if e.vram_bytes else ""
        return f"{where}, ctx {self.context}, RAM {e.ram_bytes / MiB:.0f} MiB{vram}"

    def refusal(self) -> str:
        e = self.estimate
        need = [f"RAM {e.ram_bytes / MiB:,.0f} MiB of {self.ram_budget / MiB:,.0f} MiB free"]
        if self.vram_budget or e.vram_bytes:
            need.append(f"VRAM {e.vram_bytes / MiB:,.0f} MiB of {self.vram_budget / MiB:,.0f} MiB free")
        fix = ("; ".join(self.alternatives) if self.alternatives else "nothing smaller fits either: "
               "close other programs or pick a smaller model")
        return (f"{self.model} does not fit this machine at context {self.context}: it needs "
                f"{', '.join(need)}. What fits: {fix}. Or load it anyway with --force.")


# -- the machine's budget -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    ram: int
    vram: int
    gpu_name: str = ""
    offload: bool = False  # a GPU here and a binding that can use it
    unified: bool = False

    def fits(self, est: MemoryEstimate) -> bool:
        if self.unified:  # one pool: the GPU share is part of RAM
            return est.vram_bytes <= self.vram and est.ram_bytes + est.vram_bytes <= self.ram
        return est.ram_bytes <= self.ram and est.vram_bytes <= self.vram


def budget_of(hw: HardwareInfo, offload: bool) -> Budget:
    """Free memory less the margin; with swap, what the kernel can page out counts too."""
    gpus = sorted(hw.gpus, key=lambda g: g.free_bytes, reverse=True)
    gpu = gpus[0] if gpus and offload else None
    ram = int((hw.memory.available_bytes + (hw.memory.swap_free_bytes or 0)) * (1 - MARGIN))
    return Budget(ram=ram, vram=int(gpu.free_bytes * (1 - MARGIN)) if gpu else 0,
                  gpu_name=gpu.name if gpu else "", offload=gpu is not None,
                  unified=bool(gpu and gpu.unified_memory))


# -- GGUF -----------------------------------------------------------------------------------------------
def _gguf_plan(path: str, spec: ModelSpec, options: LoadOptions, budget: Budget, cpu_flags: Iterable[str],
               extra_bufts: bool, kv_type: str) -> LoadPlan:
    ctx = options.context
    flags = tuple(cpu_flags) if extra_bufts else ()  # extra buffers off: nothing is repacked

    def est(layers: int, context: int = ctx, fill: int | None = None) -> MemoryEstimate:
        return estimate_memory(spec, "gguf", spec.gguf_quant, context, kv_type, layers, cpu_flags=flags,
                               fill=fill)

    def placement_of(layers: int) -> str:
        return ("CPU only" if layers == 0 else
                "full GPU" if layers < 0 or layers > spec.layers else "partial offload")

    if options.gpu_layers != AUTO_LAYERS:
        layers = options.gpu_layers if budget.offload else 0
        chosen = est(layers)
    elif budget.offload and budget.fits(full := est(-1)):
        layers, chosen = -1, full
    elif budget.offload:  # the most layers whose VRAM fits (VRAM grows with the layers)
        layers = _largest(lambda n: est(n).vram_bytes <= budget.vram, 0, spec.layers)
        chosen = est(layers)
    else:
        layers, chosen = 0, est(0)
    plan = LoadPlan(spec.name, path, "llama_cpp", "gguf", spec.gguf_quant or "?", ctx, kv_type, layers,
                    spec.layers, placement_of(layers), chosen, budget.ram, budget.vram, budget.gpu_name,
                    extra_bufts=extra_bufts, fits=budget.fits(chosen), notes=list(chosen.notes),
                    at_fill=lambda fill: est(layers, ctx, max(1, fill)))
    if not plan.fits:
        plan.placement = "does not fit"
        plan.alternatives = _gguf_alternatives(spec, options, budget, est, layers, kv_type)
    return plan


def _gguf_alternatives(spec: ModelSpec, options: LoadOptions, budget: Budget, est: Callable[..., MemoryEstimate],
                       layers: int, kv_type: str) -> list[str]:
    out = []
    ctx = _largest(lambda blocks: budget.fits(est(layers, blocks * 256)), 0, options.context // 256) * 256
    if ctx >= 256:
        out.append(f"context {ctx} ({est(layers, ctx).ram_bytes / MiB:,.0f} MiB RAM; --context {ctx})")
    if budget.offload and layers != 0:
        fewer = _largest(lambda n: budget.fits(est(n)), 0, spec.layers)
        if fewer and budget.fits(est(fewer)):
            out.append(f"{fewer} GPU layers (--gpu-layers {fewer})")
    if kv_type == "f16":
        q8 = estimate_memory(spec, "gguf", spec.gguf_quant, options.context, "q8_0", layers)
        if budget.fits(q8):
            out.append(f"a q8_0 KV cache ({q8.ram_bytes / MiB:,.0f} MiB RAM; --kv q8_0)")
    bare = dataclasses.replace(spec, gguf_path="")  # a bits-per-weight estimate of the other quants
    now = GGUF_BPW.get(spec.gguf_quant.upper(), 99.0)
    for quant, bpw in sorted(GGUF_BPW.items(), key=lambda kv: -kv[1]):
        if bpw >= now:
            continue
        alt = estimate_memory(bare, "gguf", quant, options.context, kv_type, layers)
        if budget.fits(alt):
            out.append(f"the {quant} quant ({alt.ram_bytes / MiB:,.0f} MiB RAM"
                       + (f", {alt.vram_bytes / MiB:,.0f} MiB VRAM" if alt.vram_bytes else "") + ")")
            break
    return out


# -- transformers ---------------------------------------------------------------------------------------
def _transformers_plan(path: str, options: LoadOptions, budget: Budget, hw: HardwareInfo) -> LoadPlan:
    import json

    from localllm.models.checkpoint_check import inspect_checkpoint

    config = json.loads((Path(path) / "config.json").read_text())
    spec = ModelSpec.from_config(config, Path(path).name)
    stored = inspect_checkpoint(path).quant
    cuda = budget.offload and hw.has_cuda
    if stored.startswith("gptq"):
        fmt, quant = "gptq", stored
    elif options.quantization in ("nf4", "fp4"):
        fmt, quant = "bnb-nf4", options.quantization
    elif options.quantization == "int8":
        fmt, quant = "bnb-int8", "int8"
    else:
        dtype = options.dtype if options.dtype != "auto" else ("float16" if cuda else "float32")
        fmt, quant = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[dtype], dtype
    est = estimate_memory(spec, fmt, quant, options.context, "f16", -1 if cuda else 0)
    plan = LoadPlan(spec.name, path, "transformers", fmt, quant, options.context, "f16", -1 if cuda else 0,
                    spec.layers, "full GPU" if cuda else "CPU only", est, budget.ram, budget.vram,
                    budget.gpu_name, device_map=options.device_map if cuda else "cpu",
                    dtype=options.dtype if options.dtype != "auto" else ("float16" if cuda else "float32"),
                    fits=budget.fits(est), notes=list(est.notes))
    if not plan.fits:
        plan.placement = "does not fit"
        ctx = _largest(lambda b: budget.fits(estimate_memory(spec, fmt, quant, b * 256, "f16", plan.gpu_layers)),
                       0, options.context // 256) * 256
        if ctx >= 256:
            plan.alternatives.append(f"context {ctx} (--context {ctx})")
        if fmt in ("fp32", "fp16", "bf16"):
            plan.alternatives.append("4-bit at load (--load-in nf4)")
    return plan


# -- entry points ---------------------------------------------------------------------------------------
def make_plan(path: str, options: LoadOptions, hw: HardwareInfo, *, offload: bool,
              extra_bufts: bool = True, kv_type: str = "f16",
              build_features: dict[str, bool] | None = None) -> LoadPlan:
    """The plan for `path` on the machine `hw`. offload: the GPU can be used (a GPU and a binding built
    for it). build_features: what the binding was compiled with (its repack and AMX kernels), when known.
    Raises LocalLLMError for a file that cannot be read."""
    budget = budget_of(hw, offload)
    if Path(path).expanduser().is_dir():
        return _transformers_plan(path, options, budget, hw)
    spec = ModelSpec.from_gguf(path)
    trained = spec.max_context
    if options.context > trained:  # llama.cpp loads it (RoPE scaling); the memory is what matters here
        spec = dataclasses.replace(spec, max_context=options.context)
    plan = _gguf_plan(path, spec, options, budget, kernel_flags(hw.cpu.flags, build_features), extra_bufts,
                      kv_type)
    if options.context > trained:
        plan.notes.append(f"context {options.context} is beyond the {trained} tokens the model was trained on")
    return plan


def plan_for(path: str, options: LoadOptions, hw: HardwareInfo | None = None,
             kv_type: str | None = None) -> LoadPlan:
    """The plan on this machine, with what its llama-cpp-python can really do (binding, kernels).
    kv_type: the KV-cache type (default: the one the options load with)."""
    kv_type = kv_type or options.kv_type
    from localllm.machine import hardware
    from localllm.runtime import binding

    hw = hw or hardware.probe()
    caps = binding.capabilities()
    notes = []
    checkpoint = Path(path).is_dir()  # transformers: torch places it, not llama-cpp-python
    offload = bool(hw.gpus) and (checkpoint or caps.gpu_offload)
    if hw.gpus and not offload:
        notes.append("the GPU is not used: this llama-cpp-python was built for the CPU only "
                     "(localllm doctor says how to rebuild it)")
    extra, why = binding.extra_bufts_for(options.extra_buffers)
    plan = make_plan(path, options, hw, offload=offload, extra_bufts=extra, kv_type=kv_type,
                     build_features=None if caps.error else caps.build_features)
    plan.notes[:0] = notes + ([f"llama.cpp extra CPU buffers {why}"] if plan.backend == "llama_cpp" else [])
    return plan
