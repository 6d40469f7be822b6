"""A chat session: history, system prompt, trimming to the context, streaming with the meter.
Headless: the TUI and the CLI both drive this."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localllm.backends.base import Message, ModelInfo
from localllm.chat.calibration import Calibration
from localllm.chat.load_checks import kernel_fallback, planned, with_kernels
from localllm.chat.reuse import reuse_note
from localllm.chat.turns import (
    FINISH_STATUS,
    KernelNotice,
    ReplyDone,
    ReplyEvent,
    TextDelta,
    TrimNotice,
    Turn,
)
from localllm.config import LoadOptions, SamplingParams
from localllm.config.settings import Settings
from localllm.errors import (
    LoadCancelled,
    LocalLLMError,
    ModelLoadError,
    NoModelLoaded,
    PromptTooLong,
    WorkerDied,
)
from localllm.models.ref import ModelRef
from localllm.models.sampling_defaults import ResolvedSampling, SamplingRequest, context_for, resolve_sampling
from localllm.runtime import binding
from localllm.runtime.metrics import Meter, ReplyStats
from localllm.runtime.model_process import meter_for, worker_runtime
from localllm.runtime.worker import DEFAULT_STOP_GRACE_S, STOP_GRACE_S, WorkerClient, meter_event

if TYPE_CHECKING:
    from localllm.runtime.plan import LoadPlan

# The turn and reply-event types live in chat.turns; most callers (the TUI, the CLI, tests, benchmarks)
# take them from here, beside the session that yields them.
__all__ = ["FINISH_STATUS", "ChatSession", "KernelNotice", "ReplyDone", "ReplyEvent", "TextDelta", "TrimNotice",
           "Turn"]


@dataclass
class ChatSession:
    system_prompt: str = "You are a helpful assistant."
    sampling: SamplingParams = field(default_factory=SamplingParams)
    history: list[Turn] = field(default_factory=list)
    context_start: int = 0  # history[context_start:] is what the model sees
    model: ModelInfo | None = None
    _client: WorkerClient | None = None
    _meter: Meter | None = None
    _load_args: tuple[str, LoadOptions, str] | None = None
    plan: LoadPlan | None = None  # the LoadPlan of the loaded model (localllm.runtime.plan), None for servers
    notices: list[str] = field(default_factory=list)  # one-line messages from loading, for the UI to show
    # what the user asked for: with it, each load resolves the model's own sampling defaults into
    # `sampling` (localllm.models.sampling_defaults); without it, `sampling` is used as given
    sampling_request: SamplingRequest | None = None
    resolved_sampling: ResolvedSampling | None = None  # the loaded model's, with each value's source
    context: tuple[int, str] | None = None  # the context the model was loaded with, and its source (context_for)
    _ref: ModelRef | None = None  # the loaded model as it was named
    _lock: threading.Lock = field(default_factory=threading.Lock)  # held by load(): one at a time
    _loading: WorkerClient | None = None  # the worker of the load in progress (cancel_load kills it)
    _load_cancelled: bool = False
    _on_progress: Callable[[float], None] | None = None  # the load in progress's progress callback
    # what the worker's KV cache holds: the last request with its reply, their tokens, and where the
    # context started (None: nothing, after a load or a new conversation)
    _cached: tuple[list[Message], int, int] | None = None
    # after each reply, keep its measured memory and speed beside the estimator's (the TUI does; see
    # chat.calibration), and say the estimate in ReplyDone
    calibrate: bool = False
    _calibration: tuple[ModelInfo | None, Calibration | None] | None = None  # for the model it was read for

    # -- model -------------------------------------------------------------------------------
    def load(self, path: str | Path, options: LoadOptions | None = None,
             backend: str | None = None, on_progress: Callable[[float], None] | None = None) -> ModelInfo:
        """Validate the file, plan the placement, start a fresh worker, load. The conversation is kept.
        `path` is anything ModelRef parses (embedded, a GGUF, FOLDER[@nf4], URL#id); without a backend,
        it says which. A plan that does not fit is refused
        (PlanRefused) unless options.force; a worker that dies of SIGILL is retried once with llama.cpp's
        extra CPU buffers off."""
        with self._lock:  # one load at a time: a second waits, then replaces the first's worker
            self._load_cancelled = False
            self._on_progress = on_progress
            try:
                return self._load(path, options, backend)
            finally:
                self._on_progress = None

    def _load(self, path: str | Path, options: LoadOptions | None, backend: str | None) -> ModelInfo:
        options = options or LoadOptions()
        ref = ModelRef.parse(path)
        path, backend = ref.path, backend or ref.backend
        if ref.load_in != "none" and options.quantization == "none":
            options = dataclasses.replace(options, quantization=ref.load_in)
        if backend == "llama_cpp":
            from localllm.models.gguf_check import inspect_gguf

            inspect_gguf(path)  # a clear error before llama.cpp can abort on a bad file
            options, notice = with_kernels(options)
            if notice:
                self.notices.append(notice)
        python, env = worker_runtime(path, backend)
        resolved = self._resolve(ref)
        n_ctx, ctx_from = context_for(options.context, resolved, self.sampling_request)
        if n_ctx != options.context:  # the model's own (Ollama's num_ctx), where nobody chose one
            options = dataclasses.replace(options, context=n_ctx)
        self.plan = None  # a refused plan leaves none
        options, self.plan = planned(path, options, backend)
        self.unload()
        try:
            self.model = self._start(path, options, backend, python, env)
        except WorkerDied as exc:
            if not kernel_fallback(exc, options, backend):
                raise
            options = dataclasses.replace(options, extra_buffers="off")
            self.notices.append(binding.SIGILL_NOTICE)
            self.model = self._start(path, options, backend, python, env)
        self._load_args, self._ref, self.context = (path, options, backend), ref, (n_ctx, ctx_from)
        if resolved is not None:
            self._take(resolved)
            self.notices += resolved.notes
        return self.model

    def _resolve(self, ref: ModelRef) -> ResolvedSampling | None:
        return None if self.sampling_request is None else resolve_sampling(ref, self.sampling_request)

    def resample(self, run: dict[str, Any] | None = None, settings: Settings | None = None,
                 base: SamplingParams | None = None) -> None:
        """New user values (the settings box): `run` joins this run's values, `settings` replaces the
        saved ones, `base` the seed and the rest, and the loaded model's sampling is resolved again."""
        request = self.sampling_request or SamplingRequest(base=self.sampling)
        request.run.update(run or {})
        if settings is not None:
            request.settings = settings
        if base is not None:
            request.base = base
        self.sampling_request = request
        if self._ref is None:  # resolved at the next load
            self.sampling = dataclasses.replace(request.base, **request.run)
            return
        self._take(resolve_sampling(self._ref, request))

    def _take(self, resolved: ResolvedSampling) -> None:
        """The model's resolved sampling, and its system prompt for a conversation not yet begun (one
        that has begun keeps the prompt it began with)."""
        self.resolved_sampling, self.sampling = resolved, resolved.params
        if not self.history:
            self.system_prompt = resolved.system_prompt

    def _start(self, path: str, options: LoadOptions, backend: str, python: str | None,
               env: dict[str, str] | None) -> ModelInfo:
        client = WorkerClient(python=python, env=env)
        client.stop_grace_s = STOP_GRACE_S.get(backend, DEFAULT_STOP_GRACE_S)
        self._loading = client
        began = time.perf_counter()
        try:
            if self._load_cancelled:
                raise LoadCancelled()
            client.start()
            info = client.load(path, options, backend, on_progress=self._on_progress)
            info.load_s = time.perf_counter() - began
        except BaseException as exc:
            client.close()
            if self._load_cancelled and isinstance(exc, WorkerDied | ModelLoadError):
                raise LoadCancelled() from None
            raise
        finally:
            self._loading = None
        self._client = client
        return info

    def cancel_load(self) -> bool:
        """Stop a load in progress (Esc): its worker is killed and load() raises LoadCancelled. The model
        loaded before it, if any, was already let go. False when nothing is loading."""
        if not self.loading:
            return False
        self._load_cancelled = True
        client = self._loading
        if client is not None:
            client.kill()
        return True

    @property
    def model_ref(self) -> str | None:
        """The loaded model as it was named (embedded, a path, ollama:NAME, a server URL); None: none."""
        return self._ref.text if self._ref is not None and self.model is not None else None

    @property
    def loading(self) -> bool:
        return self._lock.locked()

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self.model = None
        self._cached = None  # a new worker starts with an empty KV cache

    @property
    def worker_pid(self) -> int | None:
        return self._client.pid if self._client is not None and self._client.alive else None

    @property
    def log_path(self) -> Path | None:
        return self._client.log_path if self._client is not None else None

    def _require_client(self) -> WorkerClient:
        if self._client is None or not self._client.alive:
            if self._load_args is None:
                raise NoModelLoaded()
            self.load(*self._load_args)  # the last worker died: start again
        assert self._client is not None
        return self._client

    # -- conversation --------------------------------------------------------------------------
    def messages(self, start: int | None = None) -> list[Message]:
        msgs: list[Message] = []
        if self.system_prompt:
            msgs.append({"role": "system", "content": self.system_prompt})
        for turn in self.history[self.context_start if start is None else start:]:
            if turn.content or turn.role == "user":
                msgs.append({"role": turn.role, "content": turn.content})
        return msgs

    def _fit(self, client: WorkerClient) -> TrimNotice | None:
        """Drop the oldest turns (whole exchanges) until prompt + reply reserve fit the context."""
        assert self.model is not None
        n_ctx = self.model.n_ctx
        reserve = min(self.sampling.max_tokens, n_ctx // 4)
        start = self.context_start
        n = client.count_tokens(self.messages(start))
        dropped = 0
        while n + reserve > n_ctx and start < len(self.history) - 1:
            start += 1
            while start < len(self.history) - 1 and self.history[start].role != "user":
                start += 1  # keep exchanges whole: the context starts at a user turn
            dropped = start - self.context_start
            n = client.count_tokens(self.messages(start))
        if n + min(reserve, 16) > n_ctx:
            raise PromptTooLong(n, n_ctx, min(reserve, 16))
        self.context_start = start
        return TrimNotice(dropped, n, n_ctx) if dropped else None

    def send(self, text: str) -> Iterator[ReplyEvent]:
        """Add a user message and stream the reply. An empty message does nothing."""
        text = text.strip()
        if not text:
            return iter(())
        self.history.append(Turn("user", text))
        return self._reply(new_user_turn=True)

    def regenerate(self) -> Iterator[ReplyEvent]:
        """Drop the last reply and answer the last user message again."""
        if self.history and self.history[-1].role == "assistant":
            self.history.pop()
        if not self.history:
            return iter(())
        return self._reply(new_user_turn=False)

    def _reply(self, new_user_turn: bool) -> Iterator[ReplyEvent]:
        try:
            client = self._require_client()
            notice = self._fit(client)
        except LocalLLMError:
            if new_user_turn:
                self.history.pop()  # refused: the message is not kept half-sent
            raise
        return self._stream(client, notice)

    def _stream(self, client: WorkerClient, notice: TrimNotice | None) -> Iterator[ReplyEvent]:
        if notice is not None:
            yield notice
        turn = Turn("assistant", "")
        self.history.append(turn)
        try:
            yield from self._attempt(client, turn)
        except WorkerDied as exc:
            path, options, backend = self._load_args or ("", LoadOptions(), "")
            if turn.content or not kernel_fallback(exc, options, backend):
                raise
            yield KernelNotice(binding.SIGILL_NOTICE)
            self.load(path, dataclasses.replace(options, extra_buffers="off"), backend)
            turn.status = "ok"
            assert self._client is not None
            yield from self._attempt(self._client, turn)

    def _attempt(self, client: WorkerClient, turn: Turn) -> Iterator[ReplyEvent]:
        meter = meter_for(self.model, client.pid)
        self._meter = meter
        parts: list[str] = []
        meter.start()
        reason = "error"
        sent = self.messages()  # the empty reply is not sent
        try:
            for event in client.chat(sent, self.sampling):
                text, done = meter_event(meter, event)
                if text:
                    parts.append(text)
                    yield TextDelta(text)
                if done:
                    reason = done
        except (LocalLLMError, WorkerDied):
            turn.status = "error"
            raise
        except (GeneratorExit, KeyboardInterrupt):  # the consumer walked away, or Ctrl-C: stop the worker
            client.cancel()
            reason = "cancelled"
            client.settle()  # bounded: a worker that does not stop in time is killed
            raise
        finally:
            turn.content = "".join(parts)
            turn.stats = self._with_limit(meter.finish(reason))
            if turn.status != "error":
                turn.status = FINISH_STATUS.get(reason, reason)
            self._note_reuse(sent, turn)
        calibration = self._calibration_now() if self.calibrate else None
        yield ReplyDone(turn, turn.stats, calibration.record(turn.stats) if calibration is not None else None)

    def _note_reuse(self, sent: list[Message], turn: Turn) -> None:
        """Say why the cache was not fully reused (llama.cpp only: the others report none), and keep
        what it holds now for the next turn."""
        stats = turn.stats
        if self.model is None or self.model.backend != "llama_cpp" or stats is None:
            return
        if self._cached is not None:
            before, tokens, start = self._cached
            stats.cache_note = reuse_note(before, tokens, sent, stats.cached_tokens, self.context_start != start)
        reply = [{"role": "assistant", "content": turn.content}] if turn.content else []
        self._cached = (sent + reply, stats.prompt_tokens + stats.completion_tokens, self.context_start)

    def _calibration_now(self) -> Calibration | None:
        """The loaded model's Calibration: its GGUF header is read once per load."""
        if self._calibration is None or self._calibration[0] is not self.model:
            self._calibration = (self.model, Calibration.for_model(self.model))
        return self._calibration[1]

    def memory_estimate_mib(self, fill: int = 1) -> float | None:
        """The estimator's RSS for the loaded model at this context fill (llama.cpp GGUFs), else None."""
        calibration = self._calibration_now()
        return calibration.estimate_mib(fill) if calibration is not None else None

    def stop(self) -> None:
        """Stop the reply being generated (Esc). Harmless when nothing is generating."""
        if self._client is not None:
            self._client.cancel()

    def live_stats(self) -> ReplyStats | None:
        return self._with_limit(self._meter.snapshot()) if self._meter is not None else None

    def _with_limit(self, stats: ReplyStats) -> ReplyStats:
        """The stats with their decode's memory-bandwidth roofline (llama.cpp GGUFs, a known bandwidth)."""
        if stats.decode_tok_s is not None:
            calibration = self._calibration_now()
            stats.limit_tok_s = calibration.limit_tok_s(stats) if calibration is not None else None
        return stats

    def clear(self) -> None:
        """A new conversation: with the loaded model's own system prompt where it was resolved."""
        self.history.clear()
        if self.resolved_sampling is not None:
            self.system_prompt = self.resolved_sampling.system_prompt
        self.context_start = 0
        self._cached = None

    def close(self) -> None:
        self.unload()
