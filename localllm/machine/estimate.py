"""Memory and decode-speed estimates for (model, format, quant, context, KV-cache type, GPU layers)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from localllm.machine.buffers import (
    KV_BYTES,
    compute_buffer_bytes,
    kv_bytes_per_layer,
    kv_cache_bytes,
    touched_compute_bytes,
)
from localllm.machine.calibration import (
    UNCALIBRATED_BAND_PCT,
    memory_offset,
    model_key,
    record_measurement,
    speed_ratio,
)
from localllm.machine.weights import (
    FORMATS,
    EstimateError,
    gguf_weights,
    gptq_bits,
    repacked_types,
    runtime_of,
    table_weights,
    transformers_weights,
)
from localllm.models.catalog import ModelSpec
from localllm.models.quants import BITS_PER_WEIGHT as GGUF_BPW  # the one quant table

MiB = 1024**2

# Runtime terms, measured on this machine unless said otherwise (benchmarks/estimate_vs_measured.py).
LLAMA_PROCESS_BYTES = 48 * MiB  # python + libllama + llama-cpp-python objects, before the model
VOCAB_BYTES_PER_TOKEN = 400  # llama.cpp's tokenizer tables (vocab-only loads: 243-442 B per token)
CUDA_CONTEXT_BYTES = 350 * MiB  # CUDA context with lazy loading (290-400 MB; ~670 without)
CUDA_HOST_BYTES = 300 * MiB  # CUDA runtime libraries in the process (not measured here: no GPU)
# The worker with torch + transformers imported (248 MiB measured here), plus the tokenizer, allocator
# arenas and generate()'s buffers: SmolLM2 fp32 on this machine held 406 MiB besides its weights.
TORCH_PROCESS_BYTES = 400 * MiB
TORCH_CUDA_CONTEXT_BYTES = 400 * MiB


@dataclass
class MemoryEstimate:
    """Bytes per place. compute_cpu is what gets touched; llama.cpp reserves compute_cpu_reserved."""

    model: str
    format: str
    quant: str
    context: int
    kv_type: str
    gpu_layers: int  # llama.cpp layers on the GPU (layers + 1 = output head too); transformers: 0 or all
    layers: int
    bits_per_weight: float
    weight_source: str  # "tensor table" | "bits-per-weight table"
    weights_cpu: int = 0
    weights_gpu: int = 0
    kv_cpu: int = 0
    kv_gpu: int = 0
    compute_cpu: int = 0
    compute_gpu: int = 0
    overhead_cpu: int = 0
    overhead_gpu: int = 0
    compute_cpu_reserved: int = 0
    reclaimable_cpu: int = 0  # file pages in RSS the kernel can take back (repacked weights' originals)
    read_cpu: int = 0  # weight bytes each decoded token reads, per device (the roofline's numerator)
    read_gpu: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ram_bytes(self) -> int:
        return self.weights_cpu + self.kv_cpu + self.compute_cpu + self.overhead_cpu

    @property
    def rss_bytes(self) -> int:
        """What `ps` will show for the process: what it needs plus reclaimable file pages."""
        return self.ram_bytes + self.reclaimable_cpu

    @property
    def vram_bytes(self) -> int:
        return self.weights_gpu + self.kv_gpu + self.compute_gpu + self.overhead_gpu

    @property
    def weight_bytes(self) -> int:
        return self.weights_cpu + self.weights_gpu

    @property
    def kv_bytes(self) -> int:
        return self.kv_cpu + self.kv_gpu

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(ram_bytes=self.ram_bytes, rss_bytes=self.rss_bytes, vram_bytes=self.vram_bytes)
        return data


# -- validation ---------------------------------------------------------------------------------------
def check_inputs(spec: ModelSpec, fmt: str, quant: str, context: int, kv_type: str) -> None:
    if fmt not in FORMATS:
        raise EstimateError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not isinstance(context, int) or context < 1:
        raise EstimateError(f"the context must be at least 1 token (got {context!r})")
    if context > spec.max_context:
        raise EstimateError(f"{spec.name} holds at most {spec.max_context} tokens of context; "
                            f"{context} were asked. Use {spec.max_context} or less.")
    if kv_type not in KV_BYTES:
        raise EstimateError(f"unknown KV-cache type {kv_type!r}; choose one of {', '.join(KV_BYTES)}")
    if fmt == "gguf" and not spec.gguf_path and quant.upper() not in GGUF_BPW:
        raise EstimateError(f"unknown GGUF quant {quant!r}; known: {', '.join(GGUF_BPW)}")
    if fmt == "gptq":
        gptq_bits(quant)


# -- the memory estimate --------------------------------------------------------------------------------
def estimate_memory(spec: ModelSpec, fmt: str = "gguf", quant: str = "Q4_K_M", context: int = 4096,
                    kv_type: str = "f16", gpu_layers: int = 0, *, n_ubatch: int = 512,
                    flash_attn: bool = False, swa_full: bool = True, fill: int | None = None,
                    calibrate: bool = True, cpu_flags: Iterable[str] | None = None) -> MemoryEstimate:
    """Peak memory of one loaded model. gpu_layers: llama.cpp's n_gpu_layers (-1 or layers + 1: all and
    the output head); for transformers formats any non-zero value means the whole model on the GPU.
    fill: tokens in the context at the peak (default: all of it, the worst case a chat reaches)."""
    quant = quant.upper() if fmt == "gguf" else quant
    check_inputs(spec, fmt, quant, context, kv_type)
    fill = min(context, fill or context)
    if fmt == "gguf":
        est = _estimate_gguf(spec, quant, context, kv_type, gpu_layers, n_ubatch, flash_attn, swa_full, fill,
                             cpu_flags)
    else:
        est = _estimate_transformers(spec, fmt, quant, context, kv_type, gpu_layers, fill)
    if calibrate:
        runtime = runtime_of(fmt)
        est.overhead_cpu += int(memory_offset("ram", runtime))
        if est.vram_bytes:
            est.overhead_gpu += int(memory_offset("vram", runtime))
    return est


def estimate_file(path: str | os.PathLike[str], context: int, gpu_layers: int = 0, kv_type: str = "f16",
                  fill: int | None = None) -> MemoryEstimate:
    """The estimate for a GGUF about to be loaded (the chat screen shows it beside the measured peak)."""
    return estimate_memory(ModelSpec.from_gguf(path), "gguf", "", context, kv_type, gpu_layers, fill=fill)


def _estimate_gguf(spec: ModelSpec, quant: str, context: int, kv_type: str, gpu_layers: int, n_ubatch: int,
                   flash_attn: bool, swa_full: bool, fill: int, cpu_flags: Iterable[str] | None) -> MemoryEstimate:
    layers = spec.layers
    g = layers + 1 if gpu_layers < 0 or gpu_layers > layers else gpu_layers
    on_gpu = range(layers - min(g, layers), layers)  # llama.cpp offloads the last layers first
    out_on_gpu = g > layers
    notes: list[str] = []
    if kv_type != "f16" and not flash_attn:
        flash_attn = True
        notes.append(f"a {kv_type} V cache needs flash attention in llama.cpp (flash_attn=True assumed)")
    reclaimable = 0
    per_layer: Sequence[float]
    embd: float
    out: float
    if spec.gguf_path:
        table, embd, out, bpw, matrices = table_weights(spec.gguf_path)
        per_layer = list(table) + [0] * (layers - len(table))
        source, shown = "tensor table", spec.gguf_quant or quant
        # Repacked matrices are copied out of the mapped file at load: the file pages they were read
        # from stay resident (RSS) until the kernel needs them back. Counted in RSS, not in the fit.
        repack = repacked_types(cpu_flags)
        reclaimable = sum(n for il, kind, n in matrices if kind in repack
                          and (il not in on_gpu if il >= 0 else not out_on_gpu))
    else:
        layer, embd, out, bpw = gguf_weights(spec, quant)
        per_layer, source, shown = [layer] * layers, "bits-per-weight table", quant
    head = out if out else embd  # tied: the embedding matrix is the output head
    gpu_w = sum(per_layer[i] for i in on_gpu) + (head if out_on_gpu else 0)  # tied: a copy goes to the GPU
    cpu_w = sum(per_layer) - sum(per_layer[i] for i in on_gpu) + embd + (out if not out_on_gpu else 0)
    est = MemoryEstimate(spec.name, "gguf", shown, context, kv_type, g, layers, round(bpw, 3), source,
                         notes=notes)
    est.weights_cpu, est.weights_gpu, est.reclaimable_cpu = int(cpu_w), int(gpu_w), reclaimable
    est.kv_gpu = kv_cache_bytes(spec, context, kv_type, swa_full=swa_full, layers=on_gpu)
    est.kv_cpu = kv_cache_bytes(spec, context, kv_type, swa_full=swa_full) - est.kv_gpu
    host = 3 * n_ubatch * spec.hidden * 4  # CUDA_Host staging buffer
    graph, work = touched_compute_bytes(spec, fill, n_ubatch, flash_attn)
    if g == 0:
        est.compute_cpu_reserved = compute_buffer_bytes(spec, context, n_ubatch, flash_attn)
        est.compute_cpu = min(est.compute_cpu_reserved, graph) + work
    else:
        est.compute_gpu = compute_buffer_bytes(spec, context, n_ubatch, flash_attn, logits=out_on_gpu)
        if not flash_attn:  # CUDA's pool holds the f16 copy of the scores, like the CPU's work buffer
            est.compute_gpu += -(-context // 256) * 256 * n_ubatch * spec.heads * 2
        cpu_layers = layers - len(on_gpu)
        est.compute_cpu_reserved = (compute_buffer_bytes(spec, context, n_ubatch, flash_attn,
                                                         logits=not out_on_gpu) if cpu_layers else host)
        est.compute_cpu = min(est.compute_cpu_reserved, graph) + work if cpu_layers else host
        est.overhead_gpu = CUDA_CONTEXT_BYTES
    est.overhead_cpu = LLAMA_PROCESS_BYTES + spec.vocab * VOCAB_BYTES_PER_TOKEN + (CUDA_HOST_BYTES if g else 0)
    est.read_cpu = int(cpu_w - embd + (embd if spec.tied_embeddings and not out_on_gpu else 0))
    est.read_gpu = int(gpu_w)
    return est


def _estimate_transformers(spec: ModelSpec, fmt: str, quant: str, context: int, kv_type: str, gpu_layers: int,
                           fill: int) -> MemoryEstimate:
    on_gpu = gpu_layers != 0
    linear, edges, bpw = transformers_weights(spec, fmt, quant, on_gpu)
    notes: list[str] = []
    if kv_type != "f16":
        notes.append("transformers keeps its KV cache in the model's dtype: f16 assumed")
    act = 4 if fmt == "fp32" or (not on_gpu and fmt in ("bnb-nf4", "bnb-int8")) else 2
    # transformers' DynamicCache grows with the tokens held, unlike llama.cpp's, allocated up front
    kv = kv_cache_bytes(spec, fill, "f16", runtime="transformers") * act // 2
    # Prefill runs the whole prompt at once: hidden states, MLP intermediates, last-token logits in fp32.
    compute = fill * (4 * spec.hidden + 2 * spec.ffn) * act + spec.vocab * 4 * 2
    if fmt in ("gptq", "bnb-nf4", "bnb-int8") and not on_gpu:
        notes.append(f"{fmt} kernels are written for CUDA: on the CPU it runs, slowly")
    est = MemoryEstimate(spec.name, fmt, quant or fmt, context, "f16", spec.layers + 1 if on_gpu else 0,
                         spec.layers, round(bpw, 3), "bits-per-weight table", notes=notes)
    est.overhead_cpu = TORCH_PROCESS_BYTES
    if fmt in ("bnb-nf4", "bnb-int8", "gptq") or on_gpu:
        # The weights are copied out of the mmapped safetensors file (quantized, or moved to the GPU);
        # the pages read stay in RSS until the kernel needs them (measured: bnb NF4 of SmolLM2 fp32).
        est.reclaimable_cpu = int(spec.params * spec.checkpoint_bits / 8)
    if on_gpu:
        est.weights_gpu, est.kv_gpu, est.compute_gpu = int(linear + edges), kv, compute
        est.overhead_gpu = TORCH_CUDA_CONTEXT_BYTES
        est.overhead_cpu += CUDA_HOST_BYTES
        est.read_gpu = int(linear + edges - spec.embedding_params * act * (0 if spec.tied_embeddings else 1))
    else:
        est.weights_cpu, est.kv_cpu, est.compute_cpu = int(linear + edges), kv, compute
        est.compute_cpu_reserved = compute
        est.read_cpu = int(linear + edges - spec.embedding_params * act * (0 if spec.tied_embeddings else 1))
    return est


# -- decode speed ---------------------------------------------------------------------------------------
# Fraction of the memory-bandwidth roofline reached on the weights, and a fixed cost per layer per token
# (thread barriers, kernel launches, Python module calls). Calibrated by measured runs when there are any.
EFFICIENCY = {("llama.cpp", "cpu"): 0.8, ("llama.cpp", "gpu"): 0.75, ("transformers", "cpu"): 0.5,
              ("transformers", "gpu"): 0.7}
FORMAT_EFFICIENCY = {"gptq": 0.6, "bnb-nf4": 0.5, "bnb-int8": 0.3}
SLOW_ON_CPU = {"gptq": 0.1, "bnb-nf4": 0.1, "bnb-int8": 0.1}  # no CPU kernels worth the name
# llama.cpp on CPU: SmolLM2-135M (30 layers, 99 MB read per token) decodes ~100 tok/s on this 2-core
# machine at ~31 GB/s, 32% of the roofline: ~0.2 ms per layer of thread barriers on top of the reads.
PER_LAYER_S = {("llama.cpp", "cpu"): 2e-4, ("llama.cpp", "gpu"): 1.5e-5, ("transformers", "cpu"): 5e-4,
               ("transformers", "gpu"): 3.5e-4}
FORMAT_PER_LAYER_S = {"gptq": 3e-4, "bnb-nf4": 6e-4, "bnb-int8": 2e-3}  # dequant kernels per block
# Reading the KV cache is slower than reading weights: llama.cpp without flash attention walks a
# transposed V and writes f32 scores. Measured here: SmolLM2 at 1.9k and 7.8k tokens, ~22% of bandwidth.
KV_EFFICIENCY = {"cpu": 0.22, "gpu": 0.5}
# A mixture of experts' chosen experts are many small mat-vecs (OLMoE-1B-7B: 8 of 1024 x 2048 per
# matrix), read below a dense layer's rate: on a 2-core EPYC at 32 GB/s, llama.cpp decoded that shape at
# 21.1 tok/s (ours) and 21.8 (llama-server) where the dense rate predicted 27.5; 0.75 gives 21.2
# (benchmarks/scale_table.py --shapes olmoe-1b-7b). No GPU figure yet: 1.0 there.
EXPERT_EFFICIENCY = {"cpu": 0.75, "gpu": 1.0}



@dataclass
class SpeedEstimate:
    tok_s: float
    roofline_tok_s: float  # memory bandwidth / bytes read per token: no run can beat it
    bytes_per_token: int
    device: str  # "cpu" | "gpu" | "split"
    efficiency: float
    calibration: float | None = None  # median measured/predicted of earlier runs, applied
    runs: int = 0
    band_pct: float = UNCALIBRATED_BAND_PCT  # the figure is tok_s +- this many percent

    @property
    def percent_of_limit(self) -> float:
        return 100 * self.tok_s / self.roofline_tok_s if self.roofline_tok_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "percent_of_limit": round(self.percent_of_limit, 1)}


def device_of(est: MemoryEstimate) -> str:
    if est.gpu_layers == 0:
        return "cpu"
    return "gpu" if est.gpu_layers > est.layers else "split"


def gguf_as_loaded(spec: ModelSpec, context: int, gpu_layers: int, kv_type: str = "f16", extra_bufts: bool = True,
                   fill: int = 1, calibrate: bool = False) -> MemoryEstimate:
    """The estimate of a GGUF as llama.cpp loaded it: its context, layers on the GPU, KV type, and the
    extra CPU buffers on or off (off: nothing is repacked). A loaded model's figures (ModelInfo) go in."""
    return estimate_memory(spec, "gguf", spec.gguf_quant, context, kv_type, gpu_layers, fill=max(1, fill),
                           calibrate=calibrate, cpu_flags=None if extra_bufts else ())


def _reads(spec: ModelSpec, est: MemoryEstimate, fill: int) -> tuple[list[tuple[str, float, float, int]], float]:
    """What one decode step of one sequence reads, per device: (device, weight bytes, KV bytes at `fill`,
    layers); and the share of the weight bytes that are its chosen experts' (0 for a dense model)."""
    runtime = runtime_of(est.format)
    moe = spec.active_layer_params / spec.layer_params if spec.layer_params else 1.0
    read = spec.active_layer_params * spec.layers + spec.output_params
    experts = (3 * spec.hidden * spec.ffn * spec.experts_active * spec.layers / read
               if spec.experts and spec.experts_active and read else 0.0)
    kv_layer = kv_bytes_per_layer(spec, fill, est.kv_type if runtime == "llama.cpp" else "f16")
    gpu_layers = min(est.gpu_layers, est.layers)
    parts = []
    if est.read_cpu:
        cpu_layers = est.layers - gpu_layers
        parts.append(("cpu", est.read_cpu * moe, kv_layer * cpu_layers, cpu_layers))
    if est.read_gpu:
        parts.append(("gpu", est.read_gpu * moe, kv_layer * gpu_layers, gpu_layers))
    return parts, experts


def _bytes_per_s(device: str, cpu_gb_s: float, gpu_gb_s: float | None) -> float:
    return ((gpu_gb_s if device == "gpu" else cpu_gb_s) or cpu_gb_s) * 1e9


def decode_roofline(spec: ModelSpec, est: MemoryEstimate, cpu_gb_s: float, gpu_gb_s: float | None = None,
                    fill: int = 1, batch: int = 1) -> float:
    """Decode steps per second no run can beat: the memory bandwidth over the bytes one step reads (the
    weights it uses, once, and each of the `batch` sequences' KV cache at `fill`). The one definition
    behind estimate_speed's roofline, the chat's "BW limit" and the timing runs' "decode % of BW limit"."""
    parts, _ = _reads(spec, est, max(1, min(est.context, fill)))
    return _roofline(parts, cpu_gb_s, gpu_gb_s, batch)


def _roofline(parts: list[tuple[str, float, float, int]], cpu_gb_s: float, gpu_gb_s: float | None,
              batch: int = 1) -> float:
    seconds = sum((weights + batch * kv) / _bytes_per_s(device, cpu_gb_s, gpu_gb_s)
                  for device, weights, kv, _ in parts)
    return 1 / seconds if seconds else 0.0


def estimate_speed(spec: ModelSpec, est: MemoryEstimate, cpu_gb_s: float, gpu_gb_s: float | None = None,
                   fill: int | None = None, calibrate: bool = True) -> SpeedEstimate:
    """Decode tok/s from the bandwidth roofline. fill: tokens already in the context (default: half of it,
    the middle of a chat that fills it); each token reads the weights once and the KV cache so far."""
    runtime = runtime_of(est.format)
    fill = max(1, min(est.context, fill if fill is not None else est.context // 2))
    parts, experts = _reads(spec, est, fill)
    seconds = 0.0
    efficiency = 1.0
    for device, weights, kv, n_layers in parts:
        bw = _bytes_per_s(device, cpu_gb_s, gpu_gb_s)
        efficiency = EFFICIENCY[(runtime, device)]
        efficiency = (SLOW_ON_CPU if device == "cpu" else FORMAT_EFFICIENCY).get(est.format, efficiency)
        per_layer = PER_LAYER_S[(runtime, device)] + FORMAT_PER_LAYER_S.get(est.format, 0.0)
        weights_s = weights * (1 - experts + experts / EXPERT_EFFICIENCY[device]) / (efficiency * bw)
        seconds += weights_s + kv / (KV_EFFICIENCY[device] * bw) + n_layers * per_layer
    roofline = _roofline(parts, cpu_gb_s, gpu_gb_s)  # decode_roofline's, from the parts read above
    total_bytes = int(sum(p[1] + p[2] for p in parts))
    speed = SpeedEstimate(1 / seconds if seconds else 0.0, roofline, total_bytes,
                          device_of(est), efficiency)
    if calibrate:
        ratio, runs, band = speed_ratio(speed.device, runtime)
        if ratio is not None:
            speed.tok_s, speed.calibration, speed.runs, speed.band_pct = speed.tok_s * ratio, ratio, runs, band
    return speed


def record_decode(spec: ModelSpec, est: MemoryEstimate, measured_tok_s: float, cpu_gb_s: float,
                  gpu_gb_s: float | None = None, fill: int | None = None) -> None:
    """A measured decode (a chat reply, a timing-run row) becomes a calibration point for this machine:
    kept beside the uncalibrated prediction for the same load and fill."""
    predicted = estimate_speed(spec, est, cpu_gb_s, gpu_gb_s, fill=fill, calibrate=False)
    record_measurement(model=model_key(spec.name, est.quant), fmt=est.format, quant=est.quant, device=device_of(est),
                       context=est.context, predicted_tok_s=predicted.tok_s, measured_tok_s=measured_tok_s,
                       fill=fill)
