"""The KV cache's and llama.cpp's compute buffers' bytes for a model, a context and a KV-cache type."""

from __future__ import annotations

from collections.abc import Iterator

from localllm.models.catalog import ModelSpec

KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}  # bytes per element (ggml block sizes)


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
