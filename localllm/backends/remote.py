"""OpenAI-compatible servers (llama-server, vLLM, Ollama, LM Studio, llama-cpp-python's server)
through the openai SDK, streaming server-sent events."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import openai

from localllm.backends.base import Chunk, Finish, Message, ModelInfo, Prefill, StreamEvent, Usage
from localllm.config import LoadOptions, SamplingParams
from localllm.config.redact import redact_text
from localllm.errors import LocalLLMError, NoModelLoaded
from localllm.models.endpoints import DEFAULT_KEY_ENV, api_base, openai_client, server_pid, split_model


class RemoteError(LocalLLMError):
    """A server could not be used; the message says which and why."""


def _explain(exc: Exception, base: str, key_env: str) -> RemoteError:
    if isinstance(exc, openai.APITimeoutError):
        return RemoteError(f"The server at {base} stopped answering (read timeout). It may be "
                           "overloaded or stuck; the partial reply is kept.")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        text = str(cause).lower()
        if "refused" in text or "connect" in text and "error" in text:
            return RemoteError(f"Cannot reach a server at {base}: connection refused. Is it running, "
                               "and is the port right?")
        return RemoteError(f"The connection to {base} broke ({type(cause).__name__}: {cause}); "
                           "the server may have stopped mid-reply.")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        have = "is set but was refused" if os.environ.get(key_env) else "is not set"
        return RemoteError(f"The server at {base} wants an API key ({exc.status_code}): ${key_env} {have}. "
                           f"Put the key in ${key_env} (or name another variable in the settings).")
    if isinstance(exc, openai.NotFoundError):
        return RemoteError(f"{base} answered 404: it is not an OpenAI-compatible server, or the model "
                           "id is wrong.")
    if isinstance(exc, openai.APIStatusError):
        return RemoteError(f"The server at {base} answered {exc.status_code}: {exc.message}")
    if isinstance(exc, ValueError | AttributeError | TypeError):
        # a malformed event, or a body that is HTML/text where the SDK expected JSON objects
        return RemoteError(f"The server at {base} sent something that is not valid JSON of the "
                           f"OpenAI API ({type(exc).__name__}: {exc}); it may not be OpenAI-compatible.")
    return RemoteError(f"{base}: {type(exc).__name__}: {exc}")


def _valid_text(text: str) -> str:
    """A server's JSON may hold a lone surrogate (`"\\ud800"`), which json.loads accepts but no UTF-8
    encoder does (the worker pipe, the log, the terminal): each becomes U+FFFD; a valid pair is kept."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class RemoteBackend:
    name = "remote"

    def __init__(self) -> None:
        self._client: openai.OpenAI | None = None
        self._model = ""
        self._base = ""
        self._key_env = DEFAULT_KEY_ENV
        self._n_ctx = 0

    def load(self, path: str, options: LoadOptions) -> ModelInfo:
        """`path` is the server URL (or URL#model); options.remote_model picks the model (default: the
        one after #, else the server's first)."""
        self._base = redact_text(api_base(path))  # for messages and ModelInfo: shown and saved
        self._key_env = options.api_key_env or DEFAULT_KEY_ENV
        self._client = openai_client(path, self._key_env, options.read_timeout_s)
        try:
            listed = self._client.models.list()
            models = [m.id for m in listed.data]
        except Exception as exc:
            raise _explain(exc, self._base, self._key_env) from None
        if not models:
            raise RemoteError(f"The server at {self._base} lists no models.")
        wanted = options.remote_model or split_model(path)[1]
        if wanted and wanted not in models:
            raise RemoteError(f"The server at {self._base} has no model {wanted!r}; it has: "
                              + ", ".join(models))
        self._model = wanted or models[0]
        self._n_ctx = options.context
        pid = server_pid(self._base)
        return ModelInfo(name=self._model, path=self._base, backend=self.name, quant="server",
                         n_ctx=self._n_ctx, n_threads=0,
                         extra={"server_pid": pid, "models": models, "api_key_env": self._key_env})

    def _require(self) -> openai.OpenAI:
        if self._client is None:
            raise NoModelLoaded()
        return self._client

    def count_tokens(self, messages: list[Message]) -> int:
        """An estimate (~4 characters a token): servers do not share one tokenize API."""
        chars = sum(len(m["content"]) + len(m["role"]) + 8 for m in messages)
        return chars // 4 + 4

    def stream_chat(self, messages: list[Message], sampling: SamplingParams,
                    cancel: threading.Event) -> Iterator[StreamEvent]:
        client = self._require()
        extra: dict = {"top_k": sampling.top_k, "min_p": sampling.min_p,
                       "repeat_penalty": sampling.repeat_penalty}
        if sampling.ignore_eos:
            extra["ignore_eos"] = True  # llama-server and vLLM honour it
        yield Prefill(prompt_tokens=self.count_tokens(messages))
        try:
            # Message dicts are what it takes; its hints name the OpenAI TypedDicts
            stream = client.chat.completions.create(  # type: ignore[call-overload]
                model=self._model, messages=messages, stream=True,
                temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens,
                seed=sampling.seed, stream_options={"include_usage": True}, extra_body=extra,
                stop=sampling.stop or None,
            )
        except Exception as exc:
            raise _explain(exc, self._base, self._key_env) from None
        reason = None
        try:
            for chunk in stream:
                if cancel.is_set():
                    reason = "cancelled"
                    break
                if chunk.usage is not None:
                    timings = getattr(chunk, "timings", None) or (chunk.model_extra or {}).get("timings")
                    yield Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens, timings)
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        yield Chunk(_valid_text(choice.delta.content), 1)
                    if choice.finish_reason:
                        reason = "length" if choice.finish_reason == "length" else "stop"
        except Exception as exc:
            raise _explain(exc, self._base, self._key_env) from None
        finally:
            stream.close()  # closing the connection is how a server learns to stop
        if reason is None:
            raise RemoteError(f"The stream from {self._base} ended before the reply was finished; "
                              "the server may have stopped. The partial reply is kept.")
        yield Finish(reason)

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
