"""Compare: one prompt sent to several models, one after another, each in a fresh ChatSession with the
same system prompt and sampling and no earlier conversation (a single-turn comparison). The models run
in sequence, never together, so each one's timings are its own. Headless: the TUI's compare screen
drives this and shows the events; never imports textual."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localllm.chat.conversation_records import ConversationNotFound, stats_from_dict
from localllm.chat.session import ChatSession
from localllm.chat.turns import ReplyDone, TextDelta
from localllm.config import LoadOptions, SamplingParams
from localllm.errors import LocalLLMError
from localllm.models.embedded import EMBEDDED
from localllm.models.ref import ModelRef

if TYPE_CHECKING:
    from localllm.chat.recorder import Recorder
    from localllm.models.library import LibraryEntry
    from localllm.runtime.metrics import ReplyStats

CANCEL_POLL_S = 0.1  # how soon a cancel reaches a reply still in its prefill (no token to check on)


@dataclass
class CompareResult:
    """One model's answer. `stats` is ReplyStats.to_dict() (None when no reply ran); `error` is the
    message of a model that failed to load or to answer (empty when it did not fail)."""

    spec: str
    model_name: str = ""
    quant: str = ""
    text: str = ""
    stats: dict[str, Any] | None = None
    error: str = ""
    status: str = "ok"  # ok | stopped | length | error | cancelled (never started)

    @property
    def reply_stats(self) -> ReplyStats | None:
        """The stats as a ReplyStats (localllm.runtime.metrics), or None."""
        return stats_from_dict(self.stats)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Comparison:
    prompt: str
    results: list[CompareResult] = field(default_factory=list)
    system_prompt: str = ""
    sampling: dict[str, Any] | None = None  # SamplingParams as a dict[str, Any]
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        return cls(prompt=data.get("prompt", ""),
                   results=[CompareResult.from_dict(r) for r in data.get("results") or []],
                   system_prompt=data.get("system_prompt") or "", sampling=data.get("sampling"),
                   cancelled=bool(data.get("cancelled", False)))


# -- events (on_event gets each as it happens, on the thread that runs the comparison) ---------------
@dataclass
class ModelStarting:
    """Model `index` is being loaded."""

    index: int
    spec: str


@dataclass
class ModelReady:
    """Model `index` is loaded; its reply starts."""

    index: int
    model_name: str
    quant: str


@dataclass
class ModelDelta:
    index: int
    text: str


@dataclass
class ModelDone:
    """Model `index` finished: answered, failed, or was cancelled (its worker is closed by now)."""

    index: int
    result: CompareResult


CompareEvent = ModelStarting | ModelReady | ModelDelta | ModelDone


def parse_specs(text: str) -> list[str]:
    """'embedded, ~/m/q8.gguf , http://h:8080#llama' -> the model specs, empty items dropped."""
    return [s.strip() for s in text.split(",") if s.strip()]


def run_comparison(prompt: str, specs: list[str], system_prompt: str, sampling: SamplingParams,
                   on_event: Callable[[CompareEvent], None] | None = None,
                   cancel: threading.Event | None = None,
                   load_options: LoadOptions | None = None) -> Comparison:
    """Send `prompt` to each model in `specs` (anything ModelRef parses), one at a time, each in a fresh
    ChatSession (a worker of its own, closed before the next starts). A model that fails to load or to
    answer is a result with its error; the others still run. `cancel` stops the reply being generated
    (it keeps what arrived, status "stopped") and the models not started yet (status "cancelled")."""
    emit = on_event or (lambda event: None)
    comparison = Comparison(prompt, [], system_prompt, dataclasses.asdict(sampling))
    for index, spec in enumerate(specs):
        if cancel is not None and cancel.is_set():
            comparison.cancelled = True
            result = CompareResult(spec, _name_of(spec), status="cancelled")
        else:
            emit(ModelStarting(index, spec))
            result = _run_one(index, spec, prompt, system_prompt, sampling, emit, cancel, load_options)
        comparison.results.append(result)
        emit(ModelDone(index, result))
    if cancel is not None and cancel.is_set():
        comparison.cancelled = True
    return comparison


def _run_one(index: int, spec: str, prompt: str, system_prompt: str, sampling: SamplingParams,
             emit: Callable[[CompareEvent], None], cancel: threading.Event | None,
             load_options: LoadOptions | None) -> CompareResult:
    result = CompareResult(spec, _name_of(spec))
    session = ChatSession(system_prompt=system_prompt, sampling=dataclasses.replace(sampling))
    parts: list[str] = []
    try:
        try:
            info = session.load(spec, load_options or LoadOptions())
        except Exception as exc:  # a bad path, a damaged file, a load that failed: this column only
            return _failed(result, exc)
        result.model_name, result.quant = info.name, info.quant
        if cancel is not None and cancel.is_set():
            result.status = "cancelled"
            return result
        emit(ModelReady(index, info.name, info.quant))
        done = threading.Event()
        watcher = threading.Thread(target=_stop_on_cancel, args=(cancel, done, session), daemon=True,
                                   name=f"compare-cancel-{index}") if cancel is not None else None
        if watcher is not None:
            watcher.start()
        try:
            for event in session.send(prompt):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                    emit(ModelDelta(index, event.text))
                elif isinstance(event, ReplyDone):
                    result.stats = event.stats.to_dict()
                    result.status = event.turn.status
        except Exception as exc:  # the worker died mid-reply, a prompt too long for its context...
            _failed(result, exc)
            turn = session.history[-1] if session.history else None
            if turn is not None and turn.role == "assistant" and turn.stats is not None:
                result.stats = turn.stats.to_dict()  # what was measured up to the failure
        finally:
            done.set()
            if watcher is not None:
                watcher.join(timeout=5)
        result.text = "".join(parts)
        return result
    finally:
        session.close()  # its memory goes back before the next model loads: the timings stay its own


def _stop_on_cancel(cancel: threading.Event, done: threading.Event, session: ChatSession) -> None:
    """Stop the reply as soon as `cancel` is set, even in a long prefill with no token to check on."""
    while not done.is_set():
        if cancel.wait(CANCEL_POLL_S):
            session.stop()
            return


def _failed(result: CompareResult, exc: BaseException) -> CompareResult:
    result.status = "error"
    message = str(exc) or type(exc).__name__
    result.error = message if isinstance(exc, LocalLLMError) else f"{type(exc).__name__}: {message}"
    return result


def _name_of(spec: str) -> str:
    try:
        return ModelRef.parse(spec).name
    except Exception:  # the embedded model's package missing, say: the spec names it well enough
        return spec


# -- which models to offer -------------------------------------------------------------------------
def loaded_spec(session: ChatSession) -> str | None:
    """The spec that loads the session's model again ('embedded', a path, FOLDER@nf4, URL#id)."""
    args = session._load_args  # (path, options, backend) of the last load: this package's own session
    if args is None or session.model is None:
        return None
    path, options, backend = args
    if backend == "llama_cpp" and _same_file(path, _embedded_path()):
        return EMBEDDED
    if backend == "transformers" and options.quantization not in ("", "none"):
        return f"{path}@{options.quantization}"
    return str(path)


def default_specs(session: ChatSession, others: int = 2, entries: list[LibraryEntry] | None = None) -> list[str]:
    """The loaded model first, then up to `others` other usable GGUFs of the local library
    (`entries`: localllm.models.library.list_models(), read here when not given)."""
    first = loaded_spec(session)
    specs = [first] if first else []
    loaded_path = session.model.path if session.model is not None else None
    if entries is None:
        try:
            from localllm.models.library import list_models

            entries = list_models()
        except Exception:  # an unreadable cache: the loaded model is still offered
            entries = []
    added = 0
    for entry in entries:
        if added >= others:
            break
        if entry.format != "gguf" or not entry.usable:
            continue
        spec = EMBEDDED if entry.source == "embedded" else entry.path
        if spec in specs or (loaded_path and _same_file(entry.path, loaded_path)):
            continue
        specs.append(spec)
        added += 1
    return specs


def _embedded_path() -> str | None:
    try:
        return ModelRef.parse(EMBEDDED).path
    except Exception:
        return None


def _same_file(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


# -- saving ----------------------------------------------------------------------------------------
def save_comparison(recorder: Recorder, session: ChatSession, comparison: Comparison) -> str | None:
    """Save the comparison with the recorder's conversation (a new one when none is open yet); a
    warning to show when it could not be saved, None otherwise (or when conversations are not saved)."""
    store = recorder.store
    if store is None:
        return None
    try:
        if recorder.conversation_id is None:
            recorder.conversation_id = store.create(model=session.model, system_prompt=session.system_prompt)
        try:
            store.add_comparison(recorder.conversation_id, comparison)
        except ConversationNotFound:  # deleted from the history screen meanwhile: start a new one
            recorder.conversation_id = store.create(model=session.model, system_prompt=session.system_prompt)
            store.add_comparison(recorder.conversation_id, comparison)
    except LocalLLMError as exc:
        return f"The comparison could not be saved: {exc}"
    return None
