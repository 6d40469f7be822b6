"""transformers checkpoints: fp32/fp16/bf16, and bitsandbytes 8-bit (LLM.int8) or 4-bit (NF4/FP4,
double quantization) applied at load time. Streams token by token through a generate() thread."""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from transformers.generation.streamers import BaseStreamer

from localllm.backends.base import (
    BatchTiming,
    Chunk,
    Finish,
    Message,
    ModelInfo,
    Prefill,
    StopText,
    StreamEvent,
    batch_prompt_text,
)
from localllm.config import LoadOptions, SamplingParams
from localllm.errors import ModelLoadError, NoModelLoaded

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DONE = object()


def _dtype(name: str, cuda: bool) -> torch.dtype:
    if name == "auto":  # fp16 kernels are slow or missing on CPU
        return torch.float16 if cuda else torch.float32
    try:
        return DTYPES[name]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {name!r}; use one of auto, {', '.join(DTYPES)}") from None


def quantization_config(opts: LoadOptions, cuda: bool) -> BitsAndBytesConfig | None:
    if opts.quantization == "none":
        return None
    if opts.quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=opts.int8_threshold)
    if opts.quantization in ("nf4", "fp4"):
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=opts.quantization,
                                  bnb_4bit_use_double_quant=opts.double_quant,
                                  bnb_4bit_compute_dtype=_dtype(opts.compute_dtype, cuda))
    raise ModelLoadError(f"unknown quantization {opts.quantization!r}; use none, int8, nf4 or fp4")


def _eos_ids(model, tok) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = ids if isinstance(ids, list) else [ids]
    return {i for i in [*ids, tok.eos_token_id] if i is not None}


class _TokenQueue(BaseStreamer):
    """Receives generate()'s new token ids one step at a time (the first put is the prompt)."""

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for tok in value.reshape(-1).tolist():
            self.q.put(tok)

    def end(self) -> None:
        self.q.put(_DONE)


class _Cancel(transformers.StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


class _StepClock(transformers.StoppingCriteria):
    """Stamps the end of every generation step: called once a step's tokens are chosen, so the first
    stamp closes the prefill (first token included) and each later one a decode step. Never stops."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self, input_ids, scores, **kwargs):
        if input_ids.is_cuda:
            torch.cuda.synchronize(input_ids.device)  # the step's kernels are done, not just queued
        self.stamps.append(time.perf_counter())
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)


def _stored_quant(path: str) -> str:
    """The checkpoint's own quantization (checkpoint_check's label); "none" when config.json is unreadable
    (transformers then says why it cannot load it)."""
    import json

    from localllm.models.checkpoint_check import quant_label

    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return "none"
    return quant_label(config) if isinstance(config, dict) else "none"


def _load_gptq(path: str, cuda: bool):
    """GPTQ checkpoints load through GPTQModel (transformers dropped auto-gptq); it picks its CUDA
    kernels on a GPU and its torch kernels on the CPU. Its .model is a normal transformers model."""
    from gptqmodel import GPTQModel  # only in GPTQModel's own environment (see localllm.runtime.gptq_env)

    return GPTQModel.load(path, device="cuda" if cuda else "cpu").model


class TransformersBackend:
    name = "transformers"

    def __init__(self) -> None:
        self._model: Any = None  # a transformers model and tokenizer (torch and transformers: not followed)
        self._tok: Any = None
        self._n_ctx = 0

    def load(self, path: str, options: LoadOptions) -> ModelInfo:
        opts = options.resolved()
        cuda = torch.cuda.is_available()
        torch.set_num_threads(opts.threads)
        device_map = opts.device_map if cuda else "cpu"
        qconfig = quantization_config(opts, cuda)
        stored = _stored_quant(path)
        gptq = stored.startswith("gptq")
        try:
            self._tok = AutoTokenizer.from_pretrained(path, trust_remote_code=opts.trust_remote_code)
            if gptq:
                self._model = _load_gptq(path, cuda)
            else:
                self._model = AutoModelForCausalLM.from_pretrained(
                    path, dtype=_dtype(opts.dtype, cuda), quantization_config=qconfig, device_map=device_map,
                    trust_remote_code=opts.trust_remote_code, use_safetensors=True)
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            self.unload()
            raise ModelLoadError(f"transformers could not load {path}: {exc}") from None
        self._model.eval()
        config = self._model.config
        ctx_train = getattr(config, "max_position_embeddings", None)
        self._n_ctx = min(opts.context, ctx_train) if ctx_train else opts.context
        if gptq:
            quant = stored  # e.g. gptq-4bit-g64
        elif qconfig is not None:
            quant = opts.quantization
        else:
            quant = str(next(self._model.parameters()).dtype).replace("torch.", "")
        return ModelInfo(
            name=Path(path).name, path=path, backend=self.name, quant=quant, n_ctx=self._n_ctx,
            n_ctx_train=ctx_train, n_threads=opts.threads, size_bytes=self._model.get_memory_footprint(),
            chat_template="model" if self._tok.chat_template else "none (plain text prompt)",
            extra={"device": str(self._model.device), "double_quant": opts.double_quant},
        )

    def _require(self):
        if self._model is None or self._tok is None:
            raise NoModelLoaded()
        return self._model, self._tok

    def _prompt_ids(self, messages: list[Message]):
        _, tok = self._require()
        if tok.chat_template:
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)["input_ids"]
        else:
            text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
            ids = tok(text, return_tensors="pt")["input_ids"]
        return ids

    def count_tokens(self, messages: list[Message]) -> int:
        return int(self._prompt_ids(messages).shape[-1])

    def stream_chat(self, messages: list[Message], sampling: SamplingParams,
                    cancel: threading.Event) -> Iterator[StreamEvent]:
        model, tok = self._require()
        ids = self._prompt_ids(messages).to(model.device)
        n_prompt = int(ids.shape[-1])
        if n_prompt >= self._n_ctx:
            raise ValueError(f"prompt of {n_prompt} tokens does not fit the context of {self._n_ctx}")
        yield Prefill(prompt_tokens=n_prompt)
        budget = min(sampling.max_tokens, self._n_ctx - n_prompt)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        streamer = _TokenQueue()
        halt = threading.Event()  # a stop string ended the reply
        kwargs = dict(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=budget, streamer=streamer,
            stopping_criteria=transformers.StoppingCriteriaList([_Cancel(cancel), _Cancel(halt)]),
            do_sample=sampling.temperature > 0, repetition_penalty=sampling.repeat_penalty,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
        if sampling.temperature > 0:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                          min_p=sampling.min_p or None)
        if sampling.ignore_eos:
            kwargs["min_new_tokens"] = budget  # EOS is masked until the budget is spent
        elif sampling.stop_token_ids:  # the model's own EOS ids and those its defaults add
            kwargs["eos_token_id"] = sorted(_eos_ids(model, tok) | set(sampling.stop_token_ids))
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    model.generate(**kwargs)
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, name="generate", daemon=True)
        thread.start()
        generated: list[int] = []
        shown = ""
        eos = _eos_ids(model, tok) | set(sampling.stop_token_ids)
        stopped_on_eos = False
        stop_text = StopText([] if sampling.ignore_eos else sampling.stop)
        while (item := streamer.q.get()) is not _DONE:
            if halt.is_set():
                continue  # a stop string was seen: what generate() adds before it stops is dropped
            if item in eos and not sampling.ignore_eos:
                stopped_on_eos = True
                continue
            generated.append(item)
            # decode the whole reply and send what is new: byte-level BPE pieces join correctly
            text = tok.decode(generated, skip_special_tokens=True)
            new = text[len(shown):] if not text.endswith("\ufffd") else ""
            shown += new
            new, hit = stop_text.feed(new)
            yield Chunk(new, 1)
            if hit:
                halt.set()
                stopped_on_eos = True
        thread.join()
        if errors:
            raise errors[0]
        tail = "" if halt.is_set() else stop_text.flush() + tok.decode(generated, skip_special_tokens=True)[len(shown):]
        if tail:
            yield Chunk(tail, 0)
        reason = ("cancelled" if cancel.is_set() else "stop" if stopped_on_eos
                  else "length" if len(generated) >= budget else "stop")
        yield Finish(reason)

    def generate_batch(self, prompt_tokens: int, new_tokens: int, batch: int, seed: int = 0) -> BatchTiming:
        """`batch` prompts of exactly `prompt_tokens` tokens through one generate() call: greedy, exactly
        `new_tokens` tokens each (end of turn masked), every step stamped as it ends."""
        if prompt_tokens < 1 or new_tokens < 1 or batch < 1:
            raise ValueError("prompt_tokens, new_tokens and batch must each be at least 1")
        model, tok = self._require()
        rows = []
        for i in range(batch):
            ids = tok(batch_prompt_text(i, seed, prompt_tokens), add_special_tokens=True)["input_ids"]
            rows.append(ids[:prompt_tokens])
        # Every row has exactly prompt_tokens tokens, so no padding is needed; the side is set for
        # anything that pads anyway (a decoder-only model must be padded on the left).
        tok.padding_side = "left"
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ids = torch.tensor(rows, dtype=torch.long, device=model.device)
        clock = _StepClock()
        with torch.inference_mode():
            start = time.perf_counter()
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, do_sample=False, num_beams=1, pad_token_id=pad,
                stopping_criteria=transformers.StoppingCriteriaList([clock]),
                temperature=None, top_p=None, top_k=None,  # greedy: no sampling settings to warn about
            )
        stamps = clock.stamps
        if len(stamps) != new_tokens:
            raise RuntimeError(f"generate() ran {len(stamps)} steps where {new_tokens} were asked")
        return BatchTiming(
            batch=batch, prompt_tokens=prompt_tokens, new_tokens=new_tokens, prefill_s=stamps[0] - start,
            decode_s=stamps[-1] - stamps[0], step_s=[b - a for a, b in zip(stamps, stamps[1:], strict=False)],
            tokens=out[:, prompt_tokens:].tolist(),
        )

    def unload(self) -> None:
        self._model = None
        self._tok = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
