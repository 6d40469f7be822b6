"""CPU time and peak RSS of a server process on this machine while a load level runs."""

from __future__ import annotations

import threading

import psutil

RSS_EVERY_S = 0.2


class ServerWatch:
    """CPU seconds (user + system) and peak RSS of the server process over one level."""

    def __init__(self, pid: int | None) -> None:
        self._errors = (psutil.Error, OSError)
        try:
            self.proc = psutil.Process(pid) if pid else None
        except self._errors:  # it ended meanwhile
            self.proc = None
        self.cpu_s: float | None = None
        self.rss_peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_rss, daemon=True, name="load-rss")

    def _rss(self) -> None:
        try:
            rss = self.proc.memory_info().rss  # type: ignore[union-attr]
        except self._errors:
            return
        self.rss_peak = max(self.rss_peak or 0, rss)

    def _sample_rss(self) -> None:
        while not self._stop.wait(RSS_EVERY_S):
            self._rss()

    def _cpu(self) -> float | None:
        try:
            t = self.proc.cpu_times()  # type: ignore[union-attr]
        except self._errors:
            return None
        return t.user + t.system

    def __enter__(self) -> ServerWatch:
        if self.proc is not None:
            self._cpu0 = self._cpu()
            self._rss()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        self._stop.set()
        self._thread.join(timeout=2)
        self._rss()
        cpu1 = self._cpu()
        self.cpu_s = cpu1 - self._cpu0 if cpu1 is not None and self._cpu0 is not None else None

