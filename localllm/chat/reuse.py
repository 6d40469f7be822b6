"""Why a turn reused fewer prompt tokens from the KV cache than the turns before it hold.

llama.cpp keeps the last request's tokens in its KV cache and skips the longest common prefix of the
next one (the backend reports it as cached_tokens). A multi-turn chat then pays for the new tokens only,
unless something earlier in the prompt changed; the panel and `chat --json` say what."""

from __future__ import annotations

from localllm.backends.base import Message

TRIMMED = "the oldest turns were dropped to fit the context"
SYSTEM = "the system prompt changed"
EDITED = "an earlier turn changed"
TEMPLATE = "the chat template rewrites earlier turns"


def reuse_note(before: list[Message] | None, before_tokens: int, now: list[Message], cached: int,
               trimmed: bool) -> str:
    """`before`: what the cache held (the last request and its reply), `before_tokens` of them; `now`:
    this request; `cached`: the tokens it reused. Empty when the cache did its job or held nothing."""
    if not before:
        return ""  # a fresh worker or a new conversation: nothing to reuse
    if trimmed:
        return TRIMMED
    sys_before = before[0]["content"] if before[0]["role"] == "system" else None
    sys_now = now[0]["content"] if now and now[0]["role"] == "system" else None
    if sys_before != sys_now:
        return SYSTEM
    if now[:len(before)] != before:
        return "" if before[:len(now)] == now else EDITED  # a regenerate asks again what was asked
    return TEMPLATE if cached < before_tokens - 2 else ""  # the reply's end token is not kept
