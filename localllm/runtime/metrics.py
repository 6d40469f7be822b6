"""One meter for every backend: wall, CPU user/sys, TTFT, prefill and decode rates, per-token
latency percentiles, RSS and VRAM of the process that runs the model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from localllm.machine import gpu

MiB = 1024 * 1024


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def decode_rate(token_times: list[float]) -> float | None:
    """Tokens per second after the first token: the first one carries the prefill."""
    if len(token_times) < 2:
        return None
    span = token_times[-1] - token_times[0]
    return (len(token_times) - 1) / span if span > 0 else None


@dataclass
class ReplyStats:
    """Every number of one reply; None means not measured (never shown as zero)."""

    wall_s: float = 0.0
    cpu_user_s: float | None = None  # of the process running the model (a local server's too)
    cpu_sys_s: float | None = None
    client_cpu_s: float | None = None  # localllm's own side, when the model runs elsewhere
    ttft_s: float | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the previous turn's KV cache
    cache_note: str = ""  # why fewer were reused than the turns before hold (localllm.chat.reuse)
    completion_tokens: int = 0
    prefill_tok_s: float | None = None
    decode_tok_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    rss_now_mib: float | None = None
    rss_peak_mib: float | None = None
    vram_now_mib: float | None = None
    vram_peak_mib: float | None = None
    gpu_util_pct: float | None = None  # mean over the reply's samples, of the GPUs the model's process uses
    server_timings: dict[str, Any] | None = None  # as reported by the server (e.g. llama-server's timings)
    # the decode's memory-bandwidth roofline (bandwidth / bytes each token reads; chat.calibration): no
    # run beats it. None where the model's bandwidth is not known (not measured yet, a server)
    limit_tok_s: float | None = None
    finish_reason: str | None = None
    live: bool = True

    @property
    def cpu_total_s(self) -> float | None:
        if self.cpu_user_s is None or self.cpu_sys_s is None:
            return None
        return self.cpu_user_s + self.cpu_sys_s

    @property
    def cpu_per_wall(self) -> float | None:
        total = self.cpu_total_s
        return total / self.wall_s if total is not None and self.wall_s > 0 else None

    @property
    def percent_of_limit(self) -> float | None:
        """Decode speed as a percentage of the memory-bandwidth roofline (F7)."""
        if self.decode_tok_s is None or not self.limit_tok_s:
            return None
        return 100 * self.decode_tok_s / self.limit_tok_s

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu_total_s"] = self.cpu_total_s
        data["cpu_per_wall"] = self.cpu_per_wall
        data["percent_of_limit"] = self.percent_of_limit
        return data


class ProcessSampler:
    """Samples one process's CPU times, RSS and VRAM; a missing process reads as None."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.pid = pid
        self._proc = psutil.Process(pid)
        self._psutil = psutil

    def cpu_times(self) -> tuple[float, float] | None:
        try:
            t = self._proc.cpu_times()
        except self._psutil.Error:
            return None
        # llama.cpp's threads are in the process's own times; children_* covers helpers it spawns.
        return t.user + t.children_user, t.system + t.children_system

    def rss_bytes(self) -> int | None:
        try:
            return int(self._proc.memory_info().rss)
        except self._psutil.Error:
            return None

    def gpu(self) -> tuple[int, int | None] | None:
        """(VRAM bytes, GPU utilization %) of this process (machine.gpu.process_gpu); None: no NVIDIA GPU."""
        return gpu.process_gpu(self.pid)


@dataclass
class _Memory:
    now: float | None = None
    peak: float | None = None

    def add(self, value: int | None) -> None:
        if value is None:
            return
        self.now = value / MiB
        self.peak = self.now if self.peak is None else max(self.peak, self.now)


@dataclass
class Meter:
    """Measures one reply. Call start(), prompt(n), tokens(n) as they arrive, finish(reason).
    A background thread samples memory every `interval` s so peaks during prefill are seen."""

    sampler: ProcessSampler | None
    client: ProcessSampler | None = None  # the worker, when the model runs in another process
    interval: float = 0.25
    clock: Callable[[], float] = time.perf_counter
    _t0: float = 0.0
    _cpu0: tuple[float, float] | None = None
    _cpu_last: tuple[float, float] | None = None
    _token_times: list[float] = field(default_factory=list)
    _completion_tokens: int = 0
    _prompt_tokens: int = 0
    _cached_tokens: int = 0
    _end: float | None = None
    _finish: str | None = None
    _client0: tuple[float, float] | None = None
    _client_last: tuple[float, float] | None = None
    _usage: tuple[int, int, dict[str, Any] | None] | None = None
    _rss: _Memory = field(default_factory=_Memory)
    _vram: _Memory = field(default_factory=_Memory)
    _gpu_util: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._t0 = self.clock()
        if self.client is not None:
            self._client0 = self._client_last = self.client.cpu_times()
        if self.sampler is not None:
            self._cpu0 = self._cpu_last = self.sampler.cpu_times()
            self._sample_memory()
            self._thread = threading.Thread(target=self._run, name="meter-sampler", daemon=True)
            self._thread.start()

    def _sample_memory(self) -> None:
        assert self.sampler is not None
        self._rss.add(self.sampler.rss_bytes())
        sample = self.sampler.gpu()
        self._vram.add(sample[0] if sample is not None else None)
        if sample is not None and sample[1] is not None:
            self._gpu_util.append(sample[1])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample_memory()
            cpu = self.sampler.cpu_times() if self.sampler else None
            if cpu is not None:
                self._cpu_last = cpu

    def prompt(self, n_tokens: int, cached: int = 0) -> None:
        self._prompt_tokens = n_tokens
        self._cached_tokens = cached

    def tokens(self, n: int = 1, at: float | None = None) -> None:
        """n tokens arrived together (one chunk): counted once each, stamped with the arrival."""
        now = self.clock() if at is None else at
        if n:  # a zero-token chunk is only the tail of a UTF-8 sequence
            self._token_times.extend([now] * n)
        self._completion_tokens += n

    def usage(self, prompt_tokens: int, completion_tokens: int, timings: dict[str, Any] | None = None) -> None:
        """A server's own counts: they win over our estimate and our count of streamed chunks."""
        self._usage = (prompt_tokens, completion_tokens, timings)

    def finish(self, reason: str) -> ReplyStats:
        self._end = self.clock()
        if self.client is not None:
            self._client_last = self.client.cpu_times() or self._client_last
        self._finish = reason
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.sampler is not None:
            self._sample_memory()
            cpu = self.sampler.cpu_times()
            if cpu is not None:
                self._cpu_last = cpu
        return self.snapshot()

    def snapshot(self) -> ReplyStats:
        """The numbers so far (live) or final after finish()."""
        end = self._end if self._end is not None else self.clock()
        if self._end is None and self.sampler is not None:  # live: CPU times as of now
            self._cpu_last = self.sampler.cpu_times() or self._cpu_last
        times = self._token_times
        stats = ReplyStats(
            wall_s=end - self._t0,
            prompt_tokens=self._prompt_tokens,
            cached_tokens=self._cached_tokens,
            completion_tokens=self._completion_tokens,
            finish_reason=self._finish,
            live=self._end is None,
            rss_now_mib=self._rss.now, rss_peak_mib=self._rss.peak,
            vram_now_mib=self._vram.now, vram_peak_mib=self._vram.peak,
            gpu_util_pct=sum(self._gpu_util) / len(self._gpu_util) if self._gpu_util else None,
        )
        if self._cpu0 is not None and self._cpu_last is not None:
            stats.cpu_user_s = max(0.0, self._cpu_last[0] - self._cpu0[0])
            stats.cpu_sys_s = max(0.0, self._cpu_last[1] - self._cpu0[1])
        if self._client0 is not None and self._client_last is not None:
            stats.client_cpu_s = sum(self._client_last) - sum(self._client0)
        if self._usage is not None:
            stats.prompt_tokens = self._usage[0]
            stats.server_timings = self._usage[2]
        if times:
            stats.ttft_s = times[0] - self._t0
            evaluated = stats.prompt_tokens - self._cached_tokens  # cached ones cost nothing
            if evaluated > 0 and stats.ttft_s > 0:
                stats.prefill_tok_s = evaluated / stats.ttft_s
            stats.decode_tok_s = decode_rate(times)
            gaps = [(b - a) * 1000 for a, b in zip(times, times[1:], strict=False)]
            stats.latency_p50_ms = percentile(gaps, 50)
            stats.latency_p90_ms = percentile(gaps, 90)
            counted = self._usage[1] if self._usage is not None else 0
            if counted and counted != len(times) and len(times) > 1 and times[-1] > times[0]:
                # a server may pack several tokens into one event: its count wins, over the same span
                stats.completion_tokens = counted
                stats.decode_tok_s = (counted - 1) / (times[-1] - times[0])
        return stats
