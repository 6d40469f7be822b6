"""LlamaCppBackend.generate_batch's engine: `batch` prompts decoded together in a temporary context of
their own (one unified KV cache), then one greedy token per sequence per step, each step timed. Apart
from backends.llama_cpp because it drives llama.cpp's C API itself (a second context, a llama_batch,
logits by index), which the chat path never touches. Like llama_cpp, it runs only in a model worker
(its import-linter exception is beside llama_cpp's)."""

from __future__ import annotations

import time

import llama_cpp
import numpy as np

from localllm.backends.base import BatchTiming, batch_prompt_text


def batch_prompts(llm: llama_cpp.Llama, prompt_tokens: int, batch: int, seed: int) -> list[list[int]]:
    """`batch` prompts of exactly `prompt_tokens` tokens, each its own count (batch_prompt_text)."""
    prompts = []
    for i in range(batch):
        text = batch_prompt_text(i, seed, prompt_tokens)
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        prompts.append(ids[:prompt_tokens])
    return prompts


def unsupported_batch(batch: int, prompt_tokens: int, new_tokens: int, reason: str) -> BatchTiming:
    return BatchTiming(batch=batch, prompt_tokens=prompt_tokens, new_tokens=new_tokens, prefill_s=0.0,
                       decode_s=0.0, step_s=[], supported=False, reason=reason)


def batch_unsupported_reason(batch: int) -> str:
    """Why this llama-cpp-python cannot decode `batch` sequences together; "" when it can."""
    lib = llama_cpp.llama_cpp
    needed = ("llama_init_from_model", "llama_batch_init", "llama_batch_free", "llama_get_logits_ith",
              "llama_free", "llama_max_parallel_sequences")
    missing = [name for name in needed if not hasattr(lib, name)]
    if missing or "kv_unified" not in {f[0] for f in lib.llama_context_params._fields_}:
        return ("this llama-cpp-python lacks the batch API ("
                + (", ".join(missing) or "llama_context_params.kv_unified") + ")")
    max_seq = int(lib.llama_max_parallel_sequences())
    if batch > max_seq:
        return f"llama.cpp decodes at most {max_seq} sequences together"
    return ""


def run_batch(llm: llama_cpp.Llama, prompts: list[list[int]], prompt_tokens: int, new_tokens: int) -> BatchTiming:
    """The prompts decoded together in a temporary context, timed (_timed_batch); the context and its
    llama_batch are freed after, whatever happens."""
    batch = len(prompts)
    ctx, n_ctx = _batch_context(llm, prompt_tokens, new_tokens, batch)
    if not ctx:
        return unsupported_batch(batch, prompt_tokens, new_tokens,
                                 f"llama.cpp could not make a context of {n_ctx} tokens for "
                                 f"{batch} sequences (see the worker log)")
    decoder = _BatchDecoder(ctx, batch * prompt_tokens, batch, llm.n_vocab())
    try:
        return _timed_batch(decoder, prompts, prompt_tokens, new_tokens)
    finally:
        decoder.free()


def _batch_context(llm: llama_cpp.Llama, prompt_tokens: int, new_tokens: int, batch: int):
    """A temporary context for `batch` sequences (NULL when llama.cpp cannot make it), and its size."""
    lib = llama_cpp.llama_cpp
    n_prefill = batch * prompt_tokens
    params = lib.llama_context_params.from_buffer_copy(llm.context_params)  # threads, offload, types
    params.n_ctx = batch * (prompt_tokens + new_tokens)
    params.n_batch = n_prefill
    params.n_ubatch = max(1, min(n_prefill, llm.context_params.n_ubatch or 512))
    params.n_seq_max = batch
    params.kv_unified = True  # one cache that all the sequences share
    return lib.llama_init_from_model(llm._model.model, params), params.n_ctx


class _BatchDecoder:
    """A temporary context and a llama_batch of up to `n_tokens` entries; free() releases both."""

    def __init__(self, ctx, n_tokens: int, batch: int, n_vocab: int) -> None:
        self.lib = llama_cpp.llama_cpp
        self.ctx, self.batch, self.n_vocab = ctx, batch, n_vocab
        self.lb = self.lib.llama_batch_init(n_tokens, 0, 1)

    def fill(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """(token, position, sequence, wants logits) of each entry."""
        lb = self.lb
        for k, (token, pos, seq, logits) in enumerate(entries):
            lb.token[k] = token
            lb.pos[k] = pos
            lb.n_seq_id[k] = 1
            lb.seq_id[k][0] = seq
            lb.logits[k] = logits
        lb.n_tokens = len(entries)

    def decode(self, what: str) -> None:
        rc = self.lib.llama_decode(self.ctx, self.lb)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc}) on the {what} of {self.batch} sequences")

    def argmax(self, index: int) -> int:
        row = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))
        return int(row.argmax())

    def free(self) -> None:
        self.lib.llama_batch_free(self.lb)
        self.lib.llama_free(self.ctx)


def _timed_batch(decoder: _BatchDecoder, prompts: list[list[int]], prompt_tokens: int,
                 new_tokens: int) -> BatchTiming:
    """One decode of every prompt, then new_tokens - 1 greedy steps of one token per sequence, timed."""
    batch = len(prompts)
    decoder.fill([(tok, pos, seq, pos == prompt_tokens - 1)
                  for seq, ids in enumerate(prompts) for pos, tok in enumerate(ids)])
    clock = time.perf_counter
    start = clock()
    decoder.decode("prompts")
    last = [decoder.argmax(seq * prompt_tokens + prompt_tokens - 1) for seq in range(batch)]
    prefilled = clock()
    generated = [[tok] for tok in last]
    steps: list[float] = []
    before = prefilled
    for step in range(new_tokens - 1):
        decoder.fill([(last[seq], prompt_tokens + step, seq, True) for seq in range(batch)])
        decoder.decode("decode step")
        last = [decoder.argmax(seq) for seq in range(batch)]
        for seq, tok in enumerate(last):
            generated[seq].append(tok)
        now = clock()
        steps.append(now - before)
        before = now
    return BatchTiming(batch=batch, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                       prefill_s=prefilled - start, decode_s=before - prefilled, step_s=steps,
                       tokens=generated)
