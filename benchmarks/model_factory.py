"""Random-weight GGUFs with the real shapes of published models, for fit and speed checks at the sizes
people run (the embedded 135M model is all overheads).

Each file has the layer shapes, head counts and tensor types of the named model (Q4_K_M as the issue
puts it: Q4_K, with Q6_K for attn_v, ffn_down and the output head), SmolLM2's tokenizer and chat template
(its 49,152-token vocabulary, so the embedding is smaller than the published model's), and valid random
quant blocks: llama.cpp loads it, decodes at the real speed and memory, and prints gibberish. 70B and
larger are sparse: a real header and tensor table with the data left as a hole, for plan and refusal
checks only.

Beyond Llama and Qwen2.5: Gemma 3 4B (arch gemma3: 256-wide heads, q/k norms and post-norms, tied
embeddings, a 1024-token sliding window on 5 of every 6 layers; llama.cpp derives the pattern) and
OLMoE-1B-7B (arch olmoe: a mixture of experts, 64 per layer as 3-D tensors with a router, 8 used per
token: 6.9B weights on disk, 1.3B read per token).

    python benchmarks/model_factory.py llama-1b        # prints the path (written once, then cached)
    python benchmarks/model_factory.py --list

Files are cached outside the repository (LOCALLLM_SHAPES_DIR, else the user cache folder), keyed by
shape and FACTORY_VERSION. The test suite uses llama-1b at most."""

from __future__ import annotations

import argparse
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FACTORY_VERSION = 1
# bytes per block and the byte offsets of their fp16 scales (ggml-common.h)
BLOCKS = {"Q4_K": (144, (0, 2)), "Q6_K": (210, (208,)), "Q8_0": (34, (0,)), "Q4_0": (18, (0,))}
BLOCK_WEIGHTS = {"Q4_K": 256, "Q6_K": 256, "Q8_0": 32, "Q4_0": 32}


@dataclass(frozen=True)
class Shape:
    """A published model's shape: the dimensions come from localllm's catalog entry for it, this adds what
    a GGUF header needs beyond them."""

    name: str
    catalog_id: str
    arch: str  # llama | qwen2 | gemma3 | olmoe
    rope_base: float
    qkv_bias: bool = False
    sparse: bool = False  # header and tensor table only: the data is a hole
    norm_eps: float = 1e-5
    rope_linear: float = 0.0  # linear RoPE scaling of the global layers (Gemma 3 4B and up: 8)

    @property
    def spec(self):
        from localllm.models import catalog

        return catalog.get(self.catalog_id)

    layers = property(lambda self: self.spec.layers)
    hidden = property(lambda self: self.spec.hidden)
    ffn = property(lambda self: self.spec.ffn)
    heads = property(lambda self: self.spec.heads)
    kv_heads = property(lambda self: self.spec.kv_heads)
    head_dim = property(lambda self: self.spec.head_dim)
    context = property(lambda self: self.spec.max_context)
    tied = property(lambda self: self.spec.tied_embeddings)  # the output head is the token embedding
    published = property(lambda self: self.spec.name)
    sliding_window = property(lambda self: self.spec.sliding_window)
    experts = property(lambda self: self.spec.experts)  # 0: a dense model; else ffn is one expert's
    experts_used = property(lambda self: self.spec.experts_active)


SHAPES = {s.name: s for s in (
    Shape("llama-1b", "llama-3.2-1b", "llama", 500000.0),
    Shape("llama-3b", "llama-3.2-3b", "llama", 500000.0),
    Shape("llama-8b", "llama-3.1-8b", "llama", 500000.0),
    Shape("qwen2.5-7b", "qwen2.5-7b", "qwen2", 1000000.0, qkv_bias=True),  # GQA 7:1, attention biases
    Shape("llama-70b", "llama-3.1-70b", "llama", 500000.0, sparse=True),
    # Gemma 3: rope 1M on the global layers (llama.cpp's default 10k on the sliding ones is Gemma's),
    # rope_scaling {linear, 8} and rms_norm_eps 1e-6 as in google/gemma-3-4b-it's config.json
    Shape("gemma-3-4b", "gemma-3-4b", "gemma3", 1000000.0, norm_eps=1e-6, rope_linear=8.0),
    # The mixture of experts: OLMoE-1B-7B-0125-Instruct, because it is the plainest MoE llama.cpp runs
    # (every layer routed, no shared expert, one expert width, so the catalog's ffn/experts describe
    # it whole) and small enough to decode here (Q4_K_M 4.2 GB); granitemoe adds logit and residual
    # multipliers, qwen2moe a shared expert of another width.
    Shape("olmoe-1b-7b", "olmoe-1b-7b", "olmoe", 10000.0),
)}


def cache_dir() -> Path:
    env = os.environ.get("LOCALLLM_SHAPES_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("localllm")) / "shapes"


def tensors(shape: Shape, vocab: int) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, ggml shape (row length first), type) of every tensor, in llama.cpp's order (its
    load_arch_tensors for the arch, src/models/*.cpp)."""
    h, q, kv, f = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.ffn
    e = shape.experts
    out: list[tuple[str, tuple[int, ...], str]] = [("token_embd.weight", (h, vocab), "Q6_K" if shape.tied else "Q4_K")]
    for i in range(shape.layers):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (h,), "F32"),
                (b + "attn_q.weight", (h, q), "Q4_K"), (b + "attn_k.weight", (h, kv), "Q4_K"),
                (b + "attn_v.weight", (h, kv), "Q6_K"), (b + "attn_output.weight", (q, h), "Q4_K")]
        if shape.qkv_bias:
            out += [(b + "attn_q.bias", (q,), "F32"), (b + "attn_k.bias", (kv,), "F32"),
                    (b + "attn_v.bias", (kv,), "F32")]
        if shape.arch == "gemma3":  # RMS norms of each head's q and k, and one after attention
            out += [(b + "post_attention_norm.weight", (h,), "F32"),
                    (b + "attn_k_norm.weight", (shape.head_dim,), "F32"),
                    (b + "attn_q_norm.weight", (shape.head_dim,), "F32")]
        elif shape.arch == "olmoe":  # RMS norms over all of q and of k (llama.cpp: n_embd wide, both)
            out += [(b + "attn_q_norm.weight", (h,), "F32"), (b + "attn_k_norm.weight", (h,), "F32")]
        out.append((b + "ffn_norm.weight", (h,), "F32"))
        if e:  # the router (kept F32 by the converter and llama-quantize), then the experts stacked
            out += [(b + "ffn_gate_inp.weight", (h, e), "F32"),
                    (b + "ffn_gate_exps.weight", (h, f, e), "Q4_K"),
                    (b + "ffn_down_exps.weight", (f, h, e), "Q6_K"),
                    (b + "ffn_up_exps.weight", (h, f, e), "Q4_K")]
        else:
            out += [(b + "ffn_gate.weight", (h, f), "Q4_K"), (b + "ffn_up.weight", (h, f), "Q4_K"),
                    (b + "ffn_down.weight", (f, h), "Q6_K")]
        if shape.arch == "gemma3":
            out.append((b + "post_ffw_norm.weight", (h,), "F32"))
    out.append(("output_norm.weight", (h,), "F32"))
    if not shape.tied:
        out.append(("output.weight", (h, vocab), "Q6_K"))
    return out


def nbytes(dims: tuple[int, ...], kind: str) -> int:
    count = int(np.prod(dims))
    if kind == "F32":
        return 4 * count
    size, _ = BLOCKS[kind]
    return count // BLOCK_WEIGHTS[kind] * size


def random_blocks(kind: str, dims: tuple[int, ...], rng: np.random.Generator, router: bool = False) -> np.ndarray:
    """Random quants with small, finite fp16 scales: weights of about +-0.03, as trained ones."""
    if router:  # random, so tokens pick different experts (a router of ones ties: the same 8 for all)
        return rng.normal(0.0, 0.02, int(np.prod(dims))).astype(np.float32)
    if kind == "F32":
        return np.ones(int(np.prod(dims)), dtype=np.float32)  # norms at 1, biases at 1: harmless
    size, scale_at = BLOCKS[kind]
    data = np.frombuffer(rng.bytes(nbytes(dims, kind)), dtype=np.uint8).reshape(-1, size).copy()
    scale = {"Q4_K": 1.5e-4, "Q6_K": 2e-4, "Q8_0": 1e-3, "Q4_0": 4e-3}[kind]
    for at in scale_at:
        data[:, at:at + 2] = np.frombuffer(np.float16(scale).tobytes(), dtype=np.uint8)
    return data.reshape(-1)


def _copy_tokenizer(writer, reader) -> None:
    from gguf import GGUFValueType

    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = GGUFValueType(field.types[0])
        sub = GGUFValueType(field.types[1]) if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub)


def path_for(name: str) -> Path:
    return cache_dir() / f"{name}-Q4_K_M-v{FACTORY_VERSION}.gguf"


def make(name: str, out: Path | None = None, quiet: bool = False, sparse: bool | None = None) -> Path:
    """The file for shape `name`, written once (atomically) and then taken from the cache. sparse=True
    writes any shape's header and tensor table with the data as a hole (kilobytes on disk; tests), to
    `out` only: the cache holds each shape as SHAPES says."""
    import gguf

    from localllm.models.embedded import embedded_model_path

    shape = SHAPES[name]
    if sparse is not None and out is None:
        raise ValueError("make(sparse=...) needs an explicit out path")
    sparse = shape.sparse if sparse is None else sparse
    path = out or path_for(name)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(str(embedded_model_path()))
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    layout = tensors(shape, vocab)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    writer = gguf.GGUFWriter(str(tmp), shape.arch)
    arch = shape.arch
    writer.add_name(f"{name} random weights (localllm model factory)")
    writer.add_string("general.size_label", name.rsplit("-", 1)[-1].upper())
    writer.add_uint32(f"{arch}.block_count", shape.layers)
    writer.add_uint32(f"{arch}.context_length", shape.context)
    writer.add_uint32(f"{arch}.embedding_length", shape.hidden)
    writer.add_uint32(f"{arch}.feed_forward_length", shape.ffn)
    writer.add_uint32(f"{arch}.attention.head_count", shape.heads)
    writer.add_uint32(f"{arch}.attention.head_count_kv", shape.kv_heads)
    writer.add_float32(f"{arch}.rope.freq_base", shape.rope_base)
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", shape.norm_eps)
    writer.add_uint32(f"{arch}.rope.dimension_count", shape.head_dim)
    if shape.head_dim * shape.heads != shape.hidden:  # Gemma 3: 8 heads of 256 on a 2560 stream
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    if shape.sliding_window:
        writer.add_sliding_window(shape.sliding_window)
    if shape.rope_linear:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(shape.rope_linear)
    if shape.experts:
        writer.add_expert_count(shape.experts)
        writer.add_expert_used_count(shape.experts_used)
    writer.add_uint32(f"{arch}.vocab_size", vocab)
    writer.add_uint32("general.file_type", int(gguf.LlamaFileType.MOSTLY_Q4_K_M))
    writer.add_uint32("general.quantization_version", 2)
    _copy_tokenizer(writer, reader)
    for tname, dims, kind in layout:
        raw = gguf.GGMLQuantizationType[kind]
        writer.add_tensor_info(tname, list(reversed(dims)), np.dtype(np.float32), nbytes(dims, kind),
                               raw_dtype=None if kind == "F32" else raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # the same bytes on every run
    if sparse:
        fout = writer.fout[0]
        start = gguf.GGUFWriter.ggml_pad(fout.tell(), writer.data_alignment)
        total = sum(gguf.GGUFWriter.ggml_pad(nbytes(d, k), writer.data_alignment) for _, d, k in layout)
        fout.truncate(start + total)  # a hole: no disk used, reads as zeros
    else:
        for i, (tname, dims, kind) in enumerate(layout):
            writer.write_tensor_data(random_blocks(kind, dims, rng, router=tname.endswith("ffn_gate_inp.weight")))
            if not quiet and i % 50 == 0:
                print(f"  {name}: {i}/{len(layout)} tensors", file=sys.stderr, flush=True)
    writer.close()
    os.replace(tmp, path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", nargs="*", help=", ".join(SHAPES))
    parser.add_argument("--list", action="store_true", help="list the shapes and where their files go")
    args = parser.parse_args()
    if args.list or not args.shape:
        for s in SHAPES.values():
            moe = f"  experts {s.experts_used}/{s.experts}" if s.experts else ""
            swa = f"  window {s.sliding_window}" if s.sliding_window else ""
            print(f"{s.name:<12} {s.layers:>3} layers  hidden {s.hidden:<5} ffn {s.ffn:<6} heads {s.heads}/{s.kv_heads}"
                  f"{moe}{swa}{'  sparse' if s.sparse else ''}  ({s.published})  -> {path_for(s.name)}")
        return 0
    for name in args.shape:
        if name not in SHAPES:
            print(f"unknown shape {name!r}; known: {', '.join(SHAPES)}", file=sys.stderr)
            return 2
        print(make(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
