"""Messages the generation and load threads post to the chat screen (post_message is thread-safe). What a
thread measured travels in them as copies the thread no longer touches: the UI thread never reads the live
meter."""

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


class MeterSnapshot(Message):
    """The reply's figures so far (Meter.snapshot(), taken in the generation thread that feeds the meter,
    about twice a second) and when they were taken (perf_counter)."""

    def __init__(self, stats: ReplyStats, at: float) -> None:
        super().__init__()
        self.stats = stats
        self.at = at


class ReplyNotice(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ReplyFinished(Message):
    def __init__(self, stats: ReplyStats, status: str, estimate_mib: float | None = None) -> None:
        super().__init__()
        self.stats = stats
        self.status = status
        self.estimate_mib = estimate_mib  # the memory estimate for the reply's fill, when the session made one


class ReplyFailed(Message):
    def __init__(self, error: str, partial: bool) -> None:
        super().__init__()
        self.error = error
        self.partial = partial
