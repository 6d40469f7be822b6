"""The one wait of the UI tests: poll a condition with a deadline sized for a slow, shared 2-core host."""

from __future__ import annotations

import asyncio


async def wait_for(pilot, predicate, timeout: float = 180.0) -> None:
    """Generous: CI shares two cores, and a loaded machine decodes several times slower."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)
