"""The Backend protocol: backends yield text and token counts only; timing is done by metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from localllm.config import LoadOptions, SamplingParams

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}

@dataclass
class ModelInfo:
    """What a loaded model is; shown in the status bar and kept with each run."""

    name: str
    path: str
    backend: str
    quant: str = "unknown"
    n_ctx: int = 0
    n_ctx_train: int | None = None
    n_threads: int = 0
    n_gpu_layers: int = 0
    size_bytes: int = 0
    chat_template: str = "model"  # "model": from the file; otherwise the fallback's name
    extra: dict = field(default_factory=dict)
    load_s: float | None = None  # from starting the worker to the model being ready, as the app saw it


@dataclass
class Prefill:
    """First event of a reply: how many prompt tokens the backend evaluates."""

    prompt_tokens: int
    cached_tokens: int = 0


@dataclass
class Chunk:
    """Decoded text for n_tokens new tokens (text may be empty mid UTF-8 sequence)."""

    text: str
    n_tokens: int = 1


@dataclass
class Usage:
    """What a server reports about a reply: its own token counts and, when sent, its timings."""

    prompt_tokens: int
    completion_tokens: int
    server_timings: dict | None = None


@dataclass
class Finish:
    reason: str  # "stop" (end of turn), "length" (max_tokens or context), "cancelled"


StreamEvent = Prefill | Chunk | Usage | Finish


def batch_prompt_text(i: int, seed: int, count: int) -> str:
    """Prompt i of a batched timing run, at least `count` tokens long in any tokenizer: a count from a start
    of its own, so the sequences differ and each has one clear greedy continuation (a near tie could tip
    either way between a batched and a single evaluation, which differ in the last bits). Every backend's
    generate_batch builds its prompts from it, so their runs compare."""
    start = 1 + 1000 * seed + 37 * i
    return "Counting: " + ", ".join(str(n) for n in range(start, start + count))


@dataclass
class BatchTiming:
    """A batched timing run: `batch` prompts of `prompt_tokens` tokens each, generated together for
    `new_tokens` tokens each (greedy, end of turn ignored). A decode step makes one token for every
    sequence, so per-token latency is a step's time and throughput counts every sequence's tokens."""

    batch: int                 # sequences generated together
    prompt_tokens: int         # per sequence
    new_tokens: int            # per sequence (EOS ignored: always this many)
    prefill_s: float           # evaluating all the prompts, first token of each included
    decode_s: float            # the decode steps after the first token
    step_s: list[float]        # each decode step (one token for every sequence)
    supported: bool = True
    reason: str = ""           # why not, when supported is False (the timings are then 0 / empty)
    tokens: list[list[int]] = field(default_factory=list)  # the token ids each sequence generated

    @property
    def step_ms_mean(self) -> float:
        return 1000 * sum(self.step_s) / len(self.step_s) if self.step_s else 0.0

    @property
    def throughput_tok_s(self) -> float:
        return self.batch * (self.new_tokens - 1) / self.decode_s if self.decode_s > 0 else 0.0

    @property
    def prefill_tok_s(self) -> float:
        return self.batch * self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0


class StopText:
    """Ends a reply at the first of its stop strings (not shown): text that may begin one is held back
    until it cannot, so a stop string split over tokens is caught too."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """What may be shown of `text` now, and whether a stop string ended the reply."""
        if not self.stops:
            return text, False
        buf = self.held + text
        hits = [buf.find(s) for s in self.stops if s in buf]
        if hits:
            self.held = ""
            return buf[:min(hits)], True
        keep = 0
        for k in range(min(max(map(len, self.stops)) - 1, len(buf)), 0, -1):
            if any(s.startswith(buf[-k:]) for s in self.stops):
                keep = k
                break
        self.held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep], False

    def flush(self) -> str:
        """The held-back text, at the reply's end."""
        text, self.held = self.held, ""
        return text


class Backend(Protocol):
    name: str

    def load(self, path: str, options: LoadOptions) -> ModelInfo: ...

    def count_tokens(self, messages: list[Message]) -> int:
        """Tokens of the rendered chat prompt, generation prompt included."""
        ...

    def stream_chat(self, messages: list[Message], sampling: SamplingParams,
                    cancel: threading.Event) -> Iterator[StreamEvent]:
        """Yield Prefill, then Chunks, then exactly one Finish. Stops soon after cancel is set."""
        ...

    def unload(self) -> None: ...
