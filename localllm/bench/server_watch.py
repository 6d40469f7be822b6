"""What a load level does to the server: CPU time and peak RSS of a server process on this machine
(ServerWatch), and the server's own counters before and after the level (ServerCounters)."""

from __future__ import annotations

import threading

import psutil

from localllm.models.server_figures import Snapshot, stats_between
from localllm.models.server_stats import ServerStatsReader

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



class ServerCounters:
    """What the server itself counts (models.server_stats), before and after one level, and its gauges
    (KV use, requests waiting) at their peak while the level runs, sampled every PEAK_EVERY_S. A server
    without /metrics (llama-cpp-python's, Ollama, LM Studio) is not polled: only its kind and what it
    lacks are kept."""

    PEAK_EVERY_S = 0.5

    def __init__(self, reader: ServerStatsReader | None) -> None:
        self.reader = reader
        self.figures: dict | None = None
        self._before: Snapshot | None = None
        self._kv_peak: float | None = None
        self._waiting_peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="load-server-counters")

    def _gauges(self, snap: Snapshot) -> None:
        stats = stats_between(None, snap, "")
        if stats.kv_use_pct is not None:
            self._kv_peak = max(self._kv_peak or 0.0, stats.kv_use_pct)
        if stats.requests_waiting is not None:
            self._waiting_peak = max(self._waiting_peak or 0.0, stats.requests_waiting)

    def _poll(self) -> None:
        assert self.reader is not None
        while not self._stop.wait(self.PEAK_EVERY_S):
            self._gauges(self.reader.snapshot())

    def __enter__(self) -> ServerCounters:
        if self.reader is not None:
            self._before = self.reader.snapshot()
            self._gauges(self._before)
            if self.reader.has_metrics and "/metrics" in self._before.sources:
                self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.reader is None:
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        after = self.reader.snapshot()
        self._gauges(after)
        s = stats_between(self._before, after, self.reader.url)
        ms = (lambda v: None if v is None else v * 1000)  # noqa: E731
        figures = {"kind": s.kind, "prompt_tokens": s.prompt_tokens, "prompt_tokens_reused": s.prompt_tokens_cached,
                   "kv_use_peak_pct": self._kv_peak, "requests_waiting_peak": self._waiting_peak,
                   "preemptions": s.preemptions, "queue_time_mean_ms": ms(s.queue_time_mean_s),
                   "prefill_time_mean_ms": ms(s.prefill_time_mean_s), "prefill_tok_s": s.prefill_tok_s,
                   "decode_tok_s": s.decode_tok_s, "draft_acceptance_pct": s.draft_acceptance_pct,
                   "missing": s.missing}
        self.figures = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in figures.items()
                        if v is not None and v != []}
