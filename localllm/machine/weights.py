"""The bytes of a model's weights per format and quant, and which of them llama.cpp repacks for this CPU."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from localllm.errors import LocalLLMError
from localllm.machine.cpu import probe_cpu
from localllm.models.catalog import ModelSpec
from localllm.models.gguf_check import read_layout
from localllm.models.quants import BITS_PER_WEIGHT as GGUF_BPW  # the one quant table

FORMATS = ("gguf", "gptq", "bnb-nf4", "bnb-int8", "fp16", "bf16", "fp32")
BLOCK_TYPES = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16", "BF16", "F32"}  # one type everywhere
# A K-quant tensor whose row length is not a multiple of 256 falls back (llama-quant.cpp).
K_FALLBACK = {"Q2": (2.625, 4.5), "Q3": (3.4375, 4.5), "Q4": (4.5, 5.5), "Q5": (5.5, 6.0), "Q6": (6.5625, 8.5)}
_REF_PARAMS, _REF_OUTPUT = 8.03e9, 128256 * 4096  # Llama-3-8B: the table above was measured on it
TRANSFORMERS_BPW = {"fp16": 16.0, "bf16": 16.0, "fp32": 32.0, "bnb-int8": 8.01}
BNB_NF4_BPW, BNB_NF4_DQ_BPW = 4.5, 4.127  # absmax per 64 weights: fp32, or 8-bit with double quant


class EstimateError(LocalLLMError, ValueError):
    """An estimate was asked for with inputs that make no sense (context 0, unknown quant ...)."""


def runtime_of(fmt: str) -> str:
    return "llama.cpp" if fmt == "gguf" else "transformers"


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


def gguf_weights(spec: ModelSpec, quant: str) -> tuple[float, float, float, float]:
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
def table_weights(path: str) -> tuple[tuple[int, ...], int, int, float, tuple[tuple[int, str, int], ...]]:
    """Exact bytes from a GGUF's tensor table: per layer, token embedding, output head, bits per weight,
    and (layer or -1 for the head, type, bytes) of every matrix llama.cpp may repack on the CPU."""
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


# -- what llama.cpp repacks ---------------------------------------------------------------------------
REPACKED = {"avx2": {"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"}, "avx512f": {"Q2_K"},
            "dotprod": {"Q4_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "Q8_0", "MXFP4"},
            # the AMX buffer type (ggml-cpu/amx, qtype_has_amx_kernels): a second copy of these weights
            "amx_int8": {"Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"}}


@functools.lru_cache(maxsize=1)
def _this_cpu_flags() -> tuple[str, ...]:
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
