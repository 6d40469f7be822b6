"""The one wait of the UI tests: poll a condition with a deadline sized for a slow, shared 2-core host.

With `progress`, the deadline tracks the work instead of the clock: it is `timeout` seconds after the
last change of what progress() returns (a status line, bytes on disk), so a slow host that keeps
moving is waited for, and one that stalls fails with what it was doing, up to `ceiling` in all."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_for(pilot, predicate, timeout: float = 180.0, progress: Callable[[], object] | None = None,
                   ceiling: float = 1200.0) -> None:
    """Generous: CI shares two cores, and a loaded machine decodes several times slower."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + timeout
    seen = progress() if progress else None
    while not predicate():
        if progress is not None:
            now = progress()
            if now != seen:
                seen, deadline = now, min(loop.time() + timeout, start + ceiling)
        assert loop.time() < deadline, (
            f"timed out waiting for the app ({timeout:.0f} s" + (f" with no progress; last: {seen!r})"
                                                                   if progress else ")"))
        await pilot.pause(0.05)


def palette_first(app) -> str:
    """The command palette's first match for what was typed, once it lists one ("" until then)."""
    lists = app.screen.query("CommandList")
    if not lists or not lists.first().option_count:
        return ""
    return str(lists.first().get_option_at_index(0).prompt)
