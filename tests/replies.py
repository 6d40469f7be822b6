"""Reading a reply's events in tests: the streamed text and the final ReplyDone."""

from __future__ import annotations

from localllm.session import ReplyDone, TextDelta


def collect(events):
    text, done = "", None
    for ev in events:
        if isinstance(ev, TextDelta):
            text += ev.text
        elif isinstance(ev, ReplyDone):
            done = ev
    return text, done
