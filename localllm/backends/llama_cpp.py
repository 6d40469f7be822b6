"""GGUF models through llama-cpp-python, decoding with the lean Llama.generate() loop
(create_chat_completion(stream=True) measured ~6% slower here)."""

from __future__ import annotations

import codecs
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from localllm.backends.base import (
    BatchTiming,
    Chunk,
    Finish,
    Message,
    ModelInfo,
    Prefill,
    StopText,
    StreamEvent,
)
from localllm.backends.llama_cpp_batch import (
    batch_prompts,
    batch_unsupported_reason,
    run_batch,
    unsupported_batch,
)
from localllm.config import AUTO_LAYERS, LoadOptions, SamplingParams
from localllm.errors import ModelLoadError, NoModelLoaded
from localllm.models.quants import file_types

# Used only when a GGUF carries no chat template: ChatML, the most common instruct format.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


NO_ABORT = llama_cpp.ggml_abort_callback()  # a NULL callback: llama.cpp asks nothing


@contextlib.contextmanager
def _model_params(extra_bufts: bool, progress: Callable[[float], None] | None = None):
    """Llama() offers no use_extra_bufts argument: hand it default params with the field set. Off keeps
    llama.cpp away from its AMX buffer type, which dies of SIGILL on some AMX Xeons (llama.cpp #20824)."""
    module = llama_cpp.llama_cpp
    original = module.llama_model_default_params

    def report(fraction: float, _data) -> bool:
        progress(fraction)  # type: ignore[misc]
        return True  # go on (a load is cancelled by killing its worker)

    callback = llama_cpp.llama_progress_callback(report) if progress else None  # alive for the load

    def params():
        p = original()
        p.use_extra_bufts = extra_bufts
        if callback is not None:
            p.progress_callback = callback
        return p

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = original


def kv_cache_params(kv_type: str) -> dict:
    """Llama() arguments for a KV-cache type: llama.cpp needs flash attention for a quantized V cache."""
    ggml = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}
    if kv_type not in ggml:
        raise ModelLoadError(f"unknown KV-cache type {kv_type!r}; choose one of {', '.join(ggml)}")
    return {"type_k": ggml[kv_type], "type_v": ggml[kv_type], "flash_attn": kv_type != "f16"}


def binding_capabilities() -> dict:
    """What this llama-cpp-python was built with (the worker's "caps" answer; see localllm.runtime.binding)."""
    return {"gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace")}


def resolve_gpu_layers(options: LoadOptions) -> int:
    """AUTO_LAYERS left unresolved (the worker resolves it with the load plan before it gets here):
    none on a binding without GPU offload, else all."""
    if options.gpu_layers != AUTO_LAYERS:
        return options.gpu_layers
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


def open_llama(path: str, extra_bufts: bool, **kwargs) -> llama_cpp.Llama:
    """llama_cpp.Llama(path, **kwargs) with llama.cpp's extra buffer types on or off, as the worker loads
    it: for a bare loop that must run on this CPU (an AMX Xeon kills one with them on) and compare."""
    with _model_params(extra_bufts):
        return llama_cpp.Llama(model_path=path, **kwargs)


def resolve_extra_bufts(options: LoadOptions) -> bool:
    """'auto' left unresolved (the worker asks the machine's probe first) means off: the kernels that
    cannot die of SIGILL on an AMX CPU."""
    return options.extra_buffers == "on"


class LlamaCppBackend:
    name = "llama_cpp"

    def __init__(self) -> None:
        self._llm: llama_cpp.Llama | None = None
        self._formatter: Jinja2ChatFormatter | None = None
        self._n_ctx = 0
        self._extra_bufts = True

    def load(self, path: str, options: LoadOptions,
             progress: Callable[[float], None] | None = None) -> ModelInfo:
        """`progress(fraction)`: llama.cpp's own progress through the file's tensors."""
        opts = options.resolved()
        opts.gpu_layers = resolve_gpu_layers(opts)
        self._extra_bufts = resolve_extra_bufts(opts)
        try:
            with _model_params(self._extra_bufts, progress):
                llm = llama_cpp.Llama(
                    model_path=path, n_ctx=opts.context, n_threads=opts.threads,
                    n_threads_batch=opts.threads, n_gpu_layers=opts.gpu_layers,
                    seed=opts.seed, verbose=True,  # our stderr is the worker log file: keep the detail
                    **kv_cache_params(opts.kv_type),
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {path}: {exc}. "
                                 "The file may be damaged or its architecture unsupported.") from None
        template = llm.metadata.get("tokenizer.chat_template")
        model = llm._model
        eos, bos = llm.token_eos(), llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=template or CHATML,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            add_generation_prompt=True,
        )
        self._llm = llm
        # llama.cpp may round the context up while llama-cpp-python sizes its token buffer from
        # the request: the smaller of the two is what really fits.
        self._n_ctx = min(llm.n_ctx(), len(llm.input_ids))
        ctx_train = llm._model.n_ctx_train()
        stem = Path(path).stem  # users know a model by its file name: "SmolLM2-135M-Instruct.Q4_1"
        name, _, label = stem.rpartition(".") if "." in stem else (stem, "", "")
        quant = file_types().get(int(llm.metadata.get("general.file_type", -1)), label or "unknown")
        return ModelInfo(
            name=name or stem, path=path, backend=self.name, quant=quant,
            n_ctx=self._n_ctx, n_ctx_train=ctx_train, n_threads=opts.threads,
            n_gpu_layers=opts.gpu_layers, size_bytes=Path(path).stat().st_size,
            chat_template="model" if template else "chatml (fallback: the file has none)",
            extra={"general.name": llm.metadata.get("general.name", ""),
                   "extra_bufts": self._extra_bufts, "kv_type": opts.kv_type,
                   "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload())},
        )

    def _require(self) -> llama_cpp.Llama:
        if self._llm is None:
            raise NoModelLoaded()
        return self._llm

    def _prompt_tokens(self, messages: list[Message]) -> list[int]:
        llm = self._require()
        assert self._formatter is not None
        # Message dicts are what it takes; its hints name the OpenAI TypedDicts
        prompt = self._formatter(messages=messages).prompt  # type: ignore[arg-type]
        # The template already wrote BOS where the model wants it.
        return llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, messages: list[Message]) -> int:
        return len(self._prompt_tokens(messages))

    def stream_chat(self, messages: list[Message], sampling: SamplingParams,
                    cancel: threading.Event) -> Iterator[StreamEvent]:
        llm = self._require()
        tokens = self._prompt_tokens(messages)
        n_ctx = self._n_ctx
        if len(tokens) >= n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens does not fit the context of {n_ctx}")
        cached = 0
        for a, b in zip(llm._input_ids[: llm.n_tokens], tokens, strict=False):
            if a != b:
                break
            cached += 1
        yield Prefill(prompt_tokens=len(tokens), cached_tokens=cached)
        if sampling.seed is not None:
            llm.set_seed(sampling.seed)
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        budget = min(sampling.max_tokens, n_ctx - len(tokens))
        produced = 0
        reason = "length"
        if cancel.is_set():
            yield Finish("cancelled")
            return
        self._abort_on(llm, cancel)  # the prompt's evaluation stops at a stop, not after the whole prompt
        prefilling = True
        stop_ids, stop_text, stopped = set(sampling.stop_token_ids), StopText(sampling.stop), False
        try:
            for token in llm.generate(
                tokens, top_k=sampling.top_k, top_p=sampling.top_p, min_p=sampling.min_p,
                temp=sampling.temperature, repeat_penalty=sampling.repeat_penalty, reset=True,
            ):
                if prefilling:
                    self._abort_on(llm, None)
                    prefilling = False
                if not sampling.ignore_eos and (llama_cpp.llama_vocab_is_eog(vocab, token) or token in stop_ids):
                    reason = "stop"
                    break
                produced += 1
                text, stopped = stop_text.feed(decoder.decode(llm.detokenize([token])))
                yield Chunk(text, 1)
                if stopped and not sampling.ignore_eos:
                    reason = "stop"
                    break
                if cancel.is_set():
                    reason = "cancelled"
                    break
                if produced >= budget:
                    reason = "length"
                    break
        except RuntimeError:
            if not (prefilling and cancel.is_set()):
                raise
            # llama_decode returned 2 (aborted): the batches evaluated before stay in the cache
            # (llm.n_tokens counts them), the aborted one is not, so the next turn reuses what it can.
            yield Finish("cancelled")
            return
        finally:
            if prefilling:
                self._abort_on(llm, None)
        tail = "" if stopped else stop_text.flush() + decoder.decode(b"", final=True)
        if tail:
            yield Chunk(tail, 0)
        yield Finish(reason)

    def _abort_on(self, llm: llama_cpp.Llama, cancel: threading.Event | None) -> None:
        """llama.cpp asks the abort callback between the graph's nodes. Only while the prompt is
        evaluated: asked hundreds of times a token, through the GIL, it would cost decode speed."""
        if cancel is None:
            llama_cpp.llama_set_abort_callback(llm._ctx.ctx, NO_ABORT, None)
            return
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: cancel.is_set())  # kept alive here
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._abort_cb, None)

    def perplexity(self, text: str, cancel: threading.Event | None = None) -> dict:
        """Perplexity of `text` the way llama.cpp's perplexity tool does it: chunks of the context
        (at most one batch), each scored on its second half, so every scored token has context."""
        llm = self._require()
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        chunk = min(self._n_ctx, llm.n_batch, len(tokens))
        if chunk < 16:
            raise ValueError(f"the text has {len(tokens)} tokens; perplexity needs at least 16")
        first, nll, scored, chunks = chunk // 2, 0.0, 0, 0
        try:
            for start in range(0, len(tokens) - chunk + 1, chunk):
                if cancel is not None and cancel.is_set():
                    break
                part = tokens[start:start + chunk]
                if llm.token_bos() != -1:
                    part[0] = llm.token_bos()
                llm._ctx.kv_cache_seq_rm(-1, 0, -1)
                llm._batch.set_batch(batch=part, n_past=0, logits_all=True)
                llm._ctx.decode(llm._batch)
                rows = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(chunk, llm.n_vocab()))
                rows = rows[first:chunk - 1].astype(np.float64)
                top = rows.max(axis=1)
                lse = np.log(np.exp(rows - top[:, None]).sum(axis=1)) + top
                nll += float((lse - rows[np.arange(len(rows)), part[first + 1:]]).sum())
                scored += len(rows)
                chunks += 1
        finally:
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)  # the next chat starts from an empty cache
            llm.n_tokens = 0
        return {"ppl": float(np.exp(nll / scored)) if scored else None, "tokens": scored,
                "chunks": chunks, "n_ctx": chunk}

    def generate_batch(self, prompt_tokens: int, new_tokens: int, batch: int, seed: int = 0) -> BatchTiming:
        """`batch` prompts of `prompt_tokens` tokens, each a sequence of its own in one temporary context
        (unified KV cache) on the loaded model: one decode evaluates every prompt, then each decode step
        takes one token per sequence. Greedy, end of turn ignored; the chat context is left untouched."""
        if prompt_tokens < 1 or new_tokens < 1 or batch < 1:
            raise ValueError("prompt_tokens, new_tokens and batch must each be at least 1")
        llm = self._require()
        if reason := batch_unsupported_reason(batch):
            return unsupported_batch(batch, prompt_tokens, new_tokens, reason)
        return run_batch(llm, batch_prompts(llm, prompt_tokens, batch, seed), prompt_tokens, new_tokens)

    def unload(self) -> None:
        if self._llm is not None:
            self._llm.close()
        self._llm = None
        self._formatter = None
