"""Messages the generation and load threads post to the app (post_message is thread-safe)."""

from __future__ import annotations

from textual.message import Message

from localllm.backends.base import ModelInfo
from localllm.runtime.metrics import ReplyStats


class ModelLoaded(Message):
    def __init__(self, info: ModelInfo) -> None:
        super().__init__()
        self.info = info


class ModelLoadFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ReplyDelta(Message):
    """New text of the reply being streamed (batched: at most ~20 per second)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ReplyNotice(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ReplyFinished(Message):
    def __init__(self, stats: ReplyStats, status: str) -> None:
        super().__init__()
        self.stats = stats
        self.status = status


class ReplyFailed(Message):
    def __init__(self, error: str, partial: bool) -> None:
        super().__init__()
        self.error = error
        self.partial = partial
