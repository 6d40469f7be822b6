"""What the conversation database holds, as Python objects: a conversation, its turns and its
comparisons, and the errors of the store. Headless; never imports textual."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from localllm.chat.turns import Turn
from localllm.errors import LocalLLMError
from localllm.runtime.metrics import ReplyStats

TITLE_CHARS = 60


class ConversationStoreError(LocalLLMError):
    """The conversation database cannot be opened or used; the message names the file."""


class ConversationNotFound(LocalLLMError):
    def __init__(self, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        super().__init__(f"No saved conversation with id {conversation_id} (it may have been deleted).")


@dataclass
class SavedTurn:
    """One stored message; stats and model are plain dicts as saved."""

    seq: int
    role: str
    content: str
    status: str = "ok"
    stats: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    created: str = ""


@dataclass
class SavedComparison:
    """One stored comparison: the prompt, and per model a dict (spec, model_name, quant, text, stats,
    error, status) as localllm.chat.compare.CompareResult writes it."""

    id: int
    prompt: str
    results: list[dict[str, Any]] = field(default_factory=list)
    system_prompt: str = ""
    sampling: dict[str, Any] | None = None
    after_seq: int = 0  # made after this message (0: before any)
    created: str = ""


@dataclass
class ConversationSummary:
    """A row of the conversation list."""

    id: int
    title: str
    created: str
    updated: str
    model: dict[str, Any] | None
    message_count: int


@dataclass
class Conversation:
    id: int
    title: str
    created: str
    updated: str
    model: dict[str, Any] | None
    system_prompt: str
    turns: list[SavedTurn] = field(default_factory=list)
    comparisons: list[SavedComparison] = field(default_factory=list)

    def session_turns(self) -> list[Turn]:
        """The turns as localllm.chat.turns.Turn objects, to put back into a ChatSession's history."""
        return [Turn(t.role, t.content, stats_from_dict(t.stats), t.status)
                for t in self.turns if t.role in ("user", "assistant")]


def now() -> str:
    # Fixed width, so text order is time order (the list sorts on it).
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stats_from_dict(data: dict[str, Any] | None) -> ReplyStats | None:
    """A ReplyStats from its saved dict (derived keys such as cpu_total_s are recomputed)."""
    if data is None:
        return None
    names = {f.name for f in dataclasses.fields(ReplyStats)}
    return ReplyStats(**{k: v for k, v in data.items() if k in names})


def title_from(text: str) -> str:
    """A title from the first user message: its first line, cut at a word near TITLE_CHARS."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if len(line) <= TITLE_CHARS:
        return line
    return line[:TITLE_CHARS].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"
