"""Tests only: a backend that streams a script's fixed tokens at set delays, with no model, so the chat's
whole path (keypress, session, the worker process and its pipe, the Meter, the panel) runs in the quick
tier in seconds. Selected only by a `*.scripted.json` model while LOCALLLM_TEST_SCRIPTED_BACKEND=1
(`localllm.config.options`): settings never offer it and no user file reaches it by accident.

The script is a JSON object:

    tokens     the reply, one string per token (required, non-empty)
    delay_s    seconds between two tokens (default 0.05). Token i is due at first + i * delay_s, a fixed
               schedule, so one late wake-up on a busy host does not push every later token back: the
               decode rate the Meter measures stays near 1 / delay_s
    first_s    seconds from the request to the first token (default 0), the script's "prefill"
    n_ctx      the context the model reports (default: the load options')
    finish     the finish reason when every token was sent (default "stop")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from localllm.backends.base import Chunk, Finish, Message, ModelInfo, Prefill, StreamEvent
from localllm.config import LoadOptions, SamplingParams
from localllm.config.options import SCRIPTED_BACKEND, SCRIPTED_SUFFIX
from localllm.errors import ModelFileError


def prompt_tokens(messages: list[Message]) -> int:
    """The script's token count of a prompt: its words, 4 per message for the template, 2 for the
    generation prompt (tests derive expected figures from it)."""
    return sum(len(m.get("content", "").split()) + 4 for m in messages) + 2


class ScriptedBackend:
    name = SCRIPTED_BACKEND

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.delay_s = 0.05
        self.first_s = 0.0
        self.finish = "stop"

    def load(self, path: str, options: LoadOptions) -> ModelInfo:
        try:
            script = json.loads(Path(path).read_text(encoding="utf-8"))
            tokens = script["tokens"]
            if not tokens or not all(isinstance(t, str) for t in tokens):
                raise ValueError("tokens must be a non-empty list of strings")
            self.tokens = list(tokens)
            self.delay_s = float(script.get("delay_s", 0.05))
            self.first_s = float(script.get("first_s", 0.0))
            self.finish = str(script.get("finish", "stop"))
            n_ctx = int(script.get("n_ctx", options.context))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(path, f"not a usable script ({type(exc).__name__}: {exc})") from None
        return ModelInfo(name=Path(path).name.removesuffix(SCRIPTED_SUFFIX), path=path, backend=self.name,
                         quant="script", n_ctx=n_ctx, n_threads=1)

    def count_tokens(self, messages: list[Message]) -> int:
        return prompt_tokens(messages)

    def stream_chat(self, messages: list[Message], sampling: SamplingParams,
                    cancel: threading.Event) -> Iterator[StreamEvent]:
        yield Prefill(prompt_tokens(messages))
        tokens = self.tokens[:max(1, sampling.max_tokens)]
        first = time.perf_counter() + self.first_s
        for i, text in enumerate(tokens):
            wait = first + i * self.delay_s - time.perf_counter()
            if cancel.wait(wait) if wait > 0 else cancel.is_set():
                yield Finish("cancelled")
                return
            yield Chunk(text)
        yield Finish(self.finish if len(tokens) == len(self.tokens) else "length")

    def unload(self) -> None:
        self.tokens = []
