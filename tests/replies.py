"""Reading a reply's events in tests: the streamed text and the final ReplyDone."""

from __future__ import annotations

from localllm.chat.session import ReplyDone, TextDelta


def collect(events):
    text, done = "", None
    for ev in events:
        if isinstance(ev, TextDelta):
            text += ev.text
        elif isinstance(ev, ReplyDone):
            done = ev
    return text, done


def stop_at_first_piece(session, prompt: str) -> ReplyDone | None:
    """Send `prompt` and stop the reply as soon as its first text arrives; the final event."""
    done = None
    for ev in session.send(prompt):
        if isinstance(ev, TextDelta):
            session.stop()
        elif isinstance(ev, ReplyDone):
            done = ev
    return done
