"""How often the TUI repaints while a reply streams.

A repaint costs ~10-20 ms of CPU on a small machine; with no core to spare beside llama.cpp's
threads that time comes straight out of decode speed. So the interval adapts to keep the UI
thread under `budget` of one core (measured with thread_time), between `fastest` and `slowest`;
with a spare core it stays at the fastest."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class RepaintPacer:
    interval: float = 0.25  # starting point; kept across replies, so it is learnt once
    fastest: float = 0.1
    slowest: float = 1.0
    budget: float = 0.03  # share of one core
    spare_core: bool = False
    _mark: tuple[float, float] | None = None

    def reset(self) -> None:
        """A new reply: measure from here."""
        self._mark = None

    def observe(self, now: float) -> None:
        """Call on the UI thread after each repaint-causing update."""
        cpu = time.thread_time()
        if self._mark is None:
            self._mark = (now, cpu)
            return
        wall = now - self._mark[0]
        if wall < 1.0:
            return
        share = (cpu - self._mark[1]) / wall
        self._mark = (now, cpu)
        if self.spare_core:
            self.interval = self.fastest
        elif share > self.budget:
            self.interval = min(self.slowest, self.interval * 1.5)
        elif share < self.budget / 2:
            self.interval = max(self.fastest, self.interval / 1.25)
