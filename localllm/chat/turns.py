"""A conversation's turns and the events a reply streams (a trim notice, a kernel notice, text, the
finished reply with its stats). Apart from chat.session so that what only reads or stores turns (the
conversation records, the TUI's log) does not import the session, its worker and its load plan."""

from __future__ import annotations

from dataclasses import dataclass

from localllm.runtime.metrics import ReplyStats


@dataclass
class Turn:
    role: str  # "user" | "assistant"
    content: str
    stats: ReplyStats | None = None
    status: str = "ok"  # assistant turns: "ok" | "stopped" | "length" | "error"


@dataclass
class TrimNotice:
    """Old turns that no longer fit the context and are not sent to the model any more."""

    dropped_turns: int
    prompt_tokens: int
    n_ctx: int

    def __str__(self) -> str:
        return (f"{self.dropped_turns} older message(s) no longer fit the {self.n_ctx}-token context "
                f"and are not sent to the model (prompt now {self.prompt_tokens} tokens).")


@dataclass
class KernelNotice:
    """The worker died of SIGILL with llama.cpp's extra CPU buffers on; the reply is retried without."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class TextDelta:
    text: str


@dataclass
class ReplyDone:
    turn: Turn
    stats: ReplyStats
    estimate_mib: float | None = None  # the memory estimate for this reply's fill (ChatSession.calibrate)


ReplyEvent = TrimNotice | KernelNotice | TextDelta | ReplyDone

FINISH_STATUS = {"stop": "ok", "cancelled": "stopped", "length": "length"}
