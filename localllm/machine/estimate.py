"""Memory and decode-speed estimates for (model, format, quant, context, KV-cache type, GPU layers)."""

from __future__ import annotations

import dataclasses
import functools
import os
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localllm.errors import LocalLLMError
from localllm.models.catalog import ModelSpec
from localllm.models.quants import BITS_PER_WEIGHT as GGUF_BPW  # the one quant table

MiB = 1024**2
FORMATS = ("gguf", "gptq", "bnb-nf4", "bnb-int8", "fp16", "bf16", "fp32")
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}  # bytes per element (ggml block sizes)

BLOCK_TYPES = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16", "BF16", "F32"}  # one type everywhere
# A K-quant tensor whose row length is not a multiple of 256 falls back (llama-quant.cpp).
K_FALLBACK = {"Q2": (2.625, 4.5), "Q3": (3.4375, 4.5), "Q4": (4.5, 5.5), "Q5": (5.5, 6.0), "Q6": (6.5625, 8.5)}
_REF_PARAMS, _REF_OUTPUT = 8.03e9, 128256 * 4096  # Llama-3-8B: the table above was measured on it
TRANSFORMERS_BPW = {"fp16": 16.0, "bf16": 16.0, "fp32": 32.0, "bnb-int8": 8.01}
BNB_NF4_BPW, BNB_NF4_DQ_BPW = 4.5, 4.127  # absmax per 64 weights: fp32, or 8-bit with double quant

# Runtime terms, measured on this machine unless said otherwise (benchmarks/estimate_vs_measured.py).
LLAMA_PROCESS_BYTES = 48 * MiB  # python + libllama + llama-cpp-python objects, before the model
VOCAB_BYTES_PER_TOKEN = 400  # llama.cpp's tokenizer tables (vocab-only loads: 243-442 B per token)
CUDA_CONTEXT_BYTES = 350 * MiB  # CUDA context with lazy loading (290-400 MB; ~670 without)
CUDA_HOST_BYTES = 300 * MiB  # CUDA runtime libraries in the process (not measured here: no GPU)
# The worker with torch + transformers imported (248 MiB measured here), plus the tokenizer, allocator
# arenas and generate()'s buffers: SmolLM2 fp32 on this machine held 406 MiB besides its weights.
TORCH_PROCESS_BYTES = 400 * MiB
TORCH_CUDA_CONTEXT_BYTES = 400 * MiB


class EstimateError(LocalLLMError, ValueError):
    """An estimate was asked for with inputs that make no sense (context 0, unknown quant ...)."""


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


def gptq_bits(quant: str) -> float:
    """'4bit-g128' -> 4.156: per group one fp16 scale and one packed zero point."""
    try:
        bits_s, _, group_s = quant.lower().partition("-g")
        bits, group = int(bits_s.removesuffix("bit")), int(group_s or 128)
    except ValueError:
        raise EstimateError(f"GPTQ quant {quant!r} should look like 4bit-g128") from None
    if bits not in (2, 3, 4, 8) or group < 1:
        raise EstimateError(f"GPTQ quant {quant!r}: bits must be 2, 3, 4 or 8 and the group size positive")
    return bits + (16 + bits) / group


# -- weights ------------------------------------------------------------------------------------------
def _output_bpw(spec: ModelSpec, quant: str) -> float:
    """llama.cpp stores the output head (or tied embeddings) at Q6_K, Q8_0 when rows don't fit 256 blocks."""
    if quant in ("F16", "BF16", "F32", "Q8_0"):
        return GGUF_BPW[quant]
    return 6.5625 if spec.hidden % 256 == 0 else 8.5


def _body_bpw(quant: str) -> float:
    """Average bits of the repeating layers: the whole-file figure minus Llama-3-8B's Q6_K output head."""
    if quant in BLOCK_TYPES:
        return GGUF_BPW[quant]
    return (GGUF_BPW[quant] * _REF_PARAMS - _REF_OUTPUT * 6.5625) / (_REF_PARAMS - _REF_OUTPUT)


def gguf_layer_bytes(spec: ModelSpec, quant: str) -> float:
    """One block's bytes from a quant label, with K-quant fallbacks for rows not divisible by 256."""
    body = _body_bpw(quant)
    fallback = K_FALLBACK.get(quant[:2]) if quant not in BLOCK_TYPES else None
    if fallback is None:
        return spec.layer_params * body / 8
    nominal, fb = fallback
    fb += body - nominal  # keep the quant's mix of higher-bit tensors
    h, q, kv, f = spec.hidden, spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim, spec.ffn
    e = max(1, spec.experts)
    groups = [(h, h * (q + 2 * kv) + 2 * h * f * e), (q, q * h), (f, f * h * e)]  # (row length, params)
    counted = sum(n for _, n in groups)
    bits = sum(n * (body if row % 256 == 0 else fb) for row, n in groups)
    bits += (spec.layer_params - counted) * body  # norms, biases, routers
    return bits / 8


def _gguf_weights(spec: ModelSpec, quant: str) -> tuple[float, float, float, float]:
    """(bytes per layer, token embedding, output head, bits per weight) from the label."""
    out_bpw = _output_bpw(spec, quant)
    layer = gguf_layer_bytes(spec, quant)
    if spec.tied_embeddings:
        embd, out = spec.embedding_params * out_bpw / 8, 0.0
    else:
        embd, out = spec.embedding_params * _body_bpw(quant) / 8, spec.output_params * out_bpw / 8
    total = layer * spec.layers + embd + out
    return layer, embd, out, total * 8 / spec.params


@functools.lru_cache(maxsize=16)
def _table_weights(path: str) -> tuple[tuple[int, ...], int, int, float, tuple[tuple[int, str, int], ...]]:
    """Exact bytes from a GGUF's tensor table: per layer, token embedding, output head, bits per weight,
    and (layer or -1 for the head, type, bytes) of every matrix llama.cpp may repack on the CPU."""
    from localllm.models.gguf_check import read_layout

    layout = read_layout(path)
    n_layers = sum(1 for t in layout.tensors if t.name.endswith("attn_norm.weight")) or 1
    per_layer = [0] * n_layers
    embd = out = 0
    matrices = []
    for t in layout.tensors:
        parts = t.name.split(".")
        if parts[0] == "blk" and int(parts[1]) < n_layers:
            per_layer[int(parts[1])] += t.nbytes
            matrices.append((int(parts[1]), t.ggml_type, t.nbytes))
        elif parts[0] == "token_embd":
            embd += t.nbytes
        else:
            out += t.nbytes  # output head, final norm, rope tables
            matrices.append((-1, t.ggml_type, t.nbytes))
    bpw = layout.tensor_bytes * 8 / max(1, layout.info.n_params)
    return tuple(per_layer), embd, out, bpw, tuple(matrices)


def transformers_weights(spec: ModelSpec, fmt: str, quant: str, on_gpu: bool = True) -> tuple[float, float, float]:
    """(linear-layer bytes, embedding + head bytes, bpw). bnb and GPTQ keep embeddings/head in the
    load dtype: fp16 on a GPU, fp32 on the CPU (localllm's default there: fp16 CPU kernels are slow)."""
    if fmt == "gptq":
        bpw = gptq_bits(quant)
    elif fmt == "bnb-nf4":
        bpw = BNB_NF4_DQ_BPW if "dq" in quant.lower() or "double" in quant.lower() else BNB_NF4_BPW
    else:
        bpw = TRANSFORMERS_BPW[fmt]
    edge_bits = 32 if fmt == "fp32" or (not on_gpu and fmt in ("bnb-nf4", "bnb-int8")) else 16
    linear = spec.layer_params * spec.layers * bpw / 8
    edges = (spec.embedding_params + spec.output_params) * edge_bits / 8
    return linear, edges, (linear + edges) * 8 / spec.params


# -- KV cache and compute buffers ---------------------------------------------------------------------
def kv_cells(spec: ModelSpec, context: int, sliding: bool, runtime: str = "llama.cpp",
             swa_full: bool = True, n_ubatch: int = 512) -> int:
    """Cells one layer keeps. llama.cpp pads the context to 256 and, unless swa_full (the default of
    llama-cpp-python), keeps window + ubatch cells for a sliding layer; transformers keeps the window."""
    if runtime == "llama.cpp":
        cells = -(-context // 256) * 256
        if sliding and not swa_full:
            cells = min(cells, -(-(spec.sliding_window + n_ubatch) // 256) * 256)
        return cells
    return min(context, spec.sliding_window) if sliding else context


def kv_bytes_per_layer(spec: ModelSpec, cells: int, kv_type: str = "f16") -> float:
    """K and V: 2 x KV heads x head dim x cells x bytes per element."""
    return 2 * spec.kv_heads * spec.head_dim * cells * KV_BYTES[kv_type]


def kv_cache_bytes(spec: ModelSpec, context: int, kv_type: str = "f16", runtime: str = "llama.cpp",
                   swa_full: bool = True, layers: range | None = None) -> int:
    total = 0.0
    pattern = spec.sliding_pattern
    for il in layers if layers is not None else range(spec.layers):
        sliding = bool(spec.sliding_window) and (pattern <= 1 or il % pattern < pattern - 1)
        total += kv_bytes_per_layer(spec, kv_cells(spec, context, sliding, runtime, swa_full), kv_type)
    return int(total)


def compute_buffer_bytes(spec: ModelSpec, context: int, n_ubatch: int = 512, flash_attn: bool = False,
                         logits: bool = True) -> int:
    """llama.cpp's reserved graph buffer: the larger of the logits of a full ubatch and the attention
    scores + mask (no flash attention). Matches sched_reserve's log to 0.01 MiB on SmolLM2."""
    cells = -(-context // 256) * 256
    rest = 3 * spec.hidden + spec.ffn
    attn = n_ubatch * 4 * ((cells * (spec.heads + 1) if not flash_attn else cells // 2) + rest)
    out = n_ubatch * 4 * (spec.vocab + 3 * spec.hidden) if logits else 0
    return int(max(attn, out))


def prompt_batches(fill: int, n_ubatch: int = 512) -> Iterator[tuple[int, int]]:
    """(tokens, KV cells attended) of each batch llama.cpp runs to read a prompt of `fill` tokens."""
    for start in range(0, fill, n_ubatch):
        batch = min(n_ubatch, fill - start)
        yield batch, -(-(start + batch) // 256) * 256


def touched_compute_bytes(spec: ModelSpec, fill: int, n_ubatch: int = 512,
                          flash_attn: bool = False) -> tuple[int, int]:
    """What a CPU run really writes: the biggest prompt batch's graph (attention scores and mask over
    the cells so far) in the reserved buffer, plus ggml's work buffer, where the softmaxed scores are
    converted to f16 to multiply the f16 V cache. Only the last token's logits are computed, so the
    logits half of the reservation stays untouched. Returns (graph bytes, work buffer bytes)."""
    rest = 3 * spec.hidden + spec.ffn
    graph = work = 0
    for batch, cells in prompt_batches(fill, n_ubatch):
        scores = cells * (spec.heads + 1) if not flash_attn else cells // 2
        graph = max(graph, batch * 4 * (scores + rest))
        work = max(work, 0 if flash_attn else cells * batch * spec.heads * 2)
    return int(graph), int(work)


REPACKED = {"avx2": {"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"}, "avx512f": {"Q2_K"},
            "dotprod": {"Q4_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "Q8_0", "MXFP4"},
            # the AMX buffer type (ggml-cpu/amx, qtype_has_amx_kernels): a second copy of these weights
            "amx_int8": {"Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"}}


@functools.lru_cache(maxsize=1)
def _this_cpu_flags() -> tuple[str, ...]:
    from localllm.machine.hardware import probe_cpu

    return tuple(probe_cpu().flags)


# The llama_print_system_info feature a CPU flag's repack kernels need in the build (REPACK = 0 turns
# the repack buffer type off altogether).
BUILD_FEATURE = {"avx2": "AVX2", "avx512f": "AVX512"}


def kernel_flags(cpu_flags: Iterable[str], build_features: dict[str, bool] | None) -> tuple[str, ...]:
    """The CPU flags whose repack kernels this build of llama.cpp has. Unknown build (a plan for another
    machine, a failed probe): the CPU's flags as they are."""
    if not build_features:
        return tuple(cpu_flags)

    def built(flag: str) -> bool:
        if flag == "amx_int8":  # a buffer type of its own: only in a build with AMX_INT8 = 1
            return bool(build_features.get("AMX_INT8"))
        if flag in REPACKED and build_features.get("REPACK") is False:
            return False
        return build_features.get(BUILD_FEATURE.get(flag, ""), True)

    return tuple(flag for flag in cpu_flags if built(flag))


def repacked_types(cpu_flags: Iterable[str] | None = None) -> set[str]:
    """Tensor types llama.cpp re-lays out for this CPU's SIMD (ggml-cpu/repack.cpp) when it loads them."""
    flags = set(_this_cpu_flags() if cpu_flags is None else cpu_flags)
    return set().union(*(types for flag, types in REPACKED.items() if flag in flags))


def runtime_of(fmt: str) -> str:
    return "llama.cpp" if fmt == "gguf" else "transformers"


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
        table, embd, out, bpw, matrices = _table_weights(spec.gguf_path)
        per_layer = list(table) + [0] * (layers - len(table))
        source, shown = "tensor table", spec.gguf_quant or quant
        # Repacked matrices are copied out of the mapped file at load: the file pages they were read
        # from stay resident (RSS) until the kernel needs them back. Counted in RSS, not in the fit.
        repack = repacked_types(cpu_flags)
        reclaimable = sum(n for il, kind, n in matrices if kind in repack
                          and (il not in on_gpu if il >= 0 else not out_on_gpu))
    else:
        layer, embd, out, bpw = _gguf_weights(spec, quant)
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


UNCALIBRATED_BAND_PCT = 30.0  # before any run here: the model's error over the machines it was fitted on


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


def estimate_speed(spec: ModelSpec, est: MemoryEstimate, cpu_gb_s: float, gpu_gb_s: float | None = None,
                   fill: int | None = None, calibrate: bool = True) -> SpeedEstimate:
    """Decode tok/s from the bandwidth roofline. fill: tokens already in the context (default: half of it,
    the middle of a chat that fills it); each token reads the weights once and the KV cache so far."""
    runtime = runtime_of(est.format)
    fill = max(1, min(est.context, fill if fill is not None else est.context // 2))
    moe = spec.active_layer_params / spec.layer_params if spec.layer_params else 1.0
    kv_layer = kv_bytes_per_layer(spec, fill, est.kv_type if runtime == "llama.cpp" else "f16")
    gpu_layers = min(est.gpu_layers, est.layers)
    parts = []  # (device, weight bytes read, KV bytes read, layers)
    if est.read_cpu:
        cpu_layers = est.layers - gpu_layers
        parts.append(("cpu", est.read_cpu * moe, kv_layer * cpu_layers, cpu_layers))
    if est.read_gpu:
        parts.append(("gpu", est.read_gpu * moe, kv_layer * gpu_layers, gpu_layers))
    seconds = roofline = 0.0
    efficiency = 1.0
    for device, weights, kv, n_layers in parts:
        bw = ((gpu_gb_s if device == "gpu" else cpu_gb_s) or cpu_gb_s) * 1e9
        efficiency = EFFICIENCY[(runtime, device)]
        efficiency = (SLOW_ON_CPU if device == "cpu" else FORMAT_EFFICIENCY).get(est.format, efficiency)
        per_layer = PER_LAYER_S[(runtime, device)] + FORMAT_PER_LAYER_S.get(est.format, 0.0)
        roofline += (weights + kv) / bw
        seconds += weights / (efficiency * bw) + kv / (KV_EFFICIENCY[device] * bw) + n_layers * per_layer
    total_bytes = int(sum(p[1] + p[2] for p in parts))
    speed = SpeedEstimate(1 / seconds if seconds else 0.0, 1 / roofline if roofline else 0.0, total_bytes,
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


def model_key(name: str, quant: str) -> str:
    """One name for a model wherever it was measured: a GGUF's own name carries its quant
    ("SmolLM2-135M-Instruct.Q4_1"), the catalog's does not."""
    return name.removesuffix(f".{quant}").removesuffix(f"-{quant}").lower()


def measured_here(model: str, fmt: str, quant: str, device: str, max_fill: int = 1024) -> float | None:
    """The median decode tok/s measured on this machine for exactly this model, format and quant, in
    the first `max_fill` tokens of a context (a deep run measures something else)."""
    want = (model_key(model, quant), fmt, quant.upper(), device)
    rates = [r["measured_tok_s"] for r in load_measurements()
             if (model_key(str(r.get("model")), str(r.get("quant"))), r.get("format"), str(r.get("quant")).upper(),
                 r.get("device")) == want and r.get("measured_tok_s") and (r.get("fill") or 0) <= max_fill]
    return statistics.median(rates) if rates else None


# -- calibration from measured runs ---------------------------------------------------------------------
def calibration_path() -> Path:
    from localllm import config

    return config.home() / "calibration.json"


_MEASUREMENTS: dict[str, tuple[tuple[int, int, int], list[dict[str, Any]]]] = {}  # path -> (its stat, its runs)


def load_measurements() -> list[dict[str, Any]]:
    """The kept runs; parsed once per version of the file (a recommendation asks for every pick, and
    each record_measurement replaces the file, so a changed stat means a new version)."""
    from localllm.config import state

    path = calibration_path()
    try:
        st = path.stat()
    except OSError:
        return []
    version = (st.st_ino, st.st_mtime_ns, st.st_size)
    cached = _MEASUREMENTS.get(str(path))
    if cached is not None and cached[0] == version:
        return list(cached[1])
    runs = _runs(state.read_json(path))
    _MEASUREMENTS[str(path)] = (version, runs)
    return list(runs)


def _runs(data: dict[str, Any]) -> list[dict[str, Any]]:
    runs = data.get("runs")
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


def record_measurement(*, model: str, fmt: str, quant: str, device: str, context: int,
                       predicted_tok_s: float | None = None, measured_tok_s: float | None = None,
                       predicted_ram_bytes: int | None = None, measured_ram_bytes: int | None = None,
                       predicted_vram_bytes: int | None = None, measured_vram_bytes: int | None = None,
                       fill: int | None = None, keep: int = 200) -> None:
    """Keep one measured run (after a model load or a reply) so later estimates learn from it."""
    import time

    from localllm.config import state

    run = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": model, "format": fmt, "quant": quant,
           "runtime": runtime_of(fmt), "device": device, "context": context,
           "predicted_tok_s": predicted_tok_s, "measured_tok_s": measured_tok_s,
           "predicted_ram_bytes": predicted_ram_bytes, "measured_ram_bytes": measured_ram_bytes,
           "predicted_vram_bytes": predicted_vram_bytes, "measured_vram_bytes": measured_vram_bytes,
           "fill": fill}
    # under the file's lock: another app instance recording at the same time keeps its run too
    state.update(calibration_path(), lambda data: {**data, "runs": (_runs(data) + [run])[-keep:]}, indent=1)


def speed_ratio(device: str, runtime: str) -> tuple[float | None, int, float]:
    """Median measured/predicted decode speed of this device and runtime, clamped to [0.2, 3]; how many
    runs it comes from; and the band around it: twice the median deviation of the runs from it (at
    least 10%; 20% with fewer than 3 runs)."""
    ratios = [r["measured_tok_s"] / r["predicted_tok_s"] for r in load_measurements()
              if r.get("device") == device and r.get("runtime") == runtime
              and r.get("measured_tok_s") and r.get("predicted_tok_s")]
    if not ratios:
        return None, 0, UNCALIBRATED_BAND_PCT
    mid = statistics.median(ratios)
    spread = 200 * statistics.median(abs(r / mid - 1) for r in ratios)
    band = max(10.0 if len(ratios) >= 3 else 20.0, min(UNCALIBRATED_BAND_PCT, spread))
    return min(3.0, max(0.2, mid)), len(ratios), round(band, 1)


def memory_offset(kind: str, runtime: str) -> float:
    """Median measured - predicted bytes ("ram" or "vram") of earlier loads, within +-512 MiB: a
    mismatch is a runtime overhead we got wrong, not something that scales with the model."""
    diffs = [r[f"measured_{kind}_bytes"] - r[f"predicted_{kind}_bytes"] for r in load_measurements()
             if r.get("runtime") == runtime and r.get(f"measured_{kind}_bytes")
             and r.get(f"predicted_{kind}_bytes")]
    return max(-512 * MiB, min(512 * MiB, statistics.median(diffs))) if diffs else 0.0
