"""The meter's arithmetic, with a scripted clock and a scripted process sampler."""

from __future__ import annotations

import pytest

from localllm.runtime.metrics import Meter, decode_rate, percentile


class FakeSampler:
    def __init__(self) -> None:
        self.cpu = (1.0, 0.5)
        self.rss = 100 * 2**20
        self.vram: int | None = None
        self.util: int | None = None

    def cpu_times(self):
        return self.cpu

    def rss_bytes(self):
        return self.rss

    def gpu(self):
        return None if self.vram is None else (self.vram, self.util)


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_percentile_matches_linear_interpolation() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == pytest.approx(9.1)


def test_decode_rate_excludes_the_first_token() -> None:
    assert decode_rate([1.0]) is None
    # first token at 1.0 carries the prefill; 4 more tokens over 0.4 s = 10 tok/s
    assert decode_rate([1.0, 1.1, 1.2, 1.3, 1.4]) == pytest.approx(10.0)


def test_meter_reply_numbers() -> None:
    clock, sampler = Clock(), FakeSampler()
    meter = Meter(sampler, interval=3600, clock=clock)
    meter.start()
    meter.prompt(50, cached=10)
    clock.now = 10.5  # first token after 0.5 s: 40 evaluated prompt tokens -> 80 tok/s
    meter.tokens(1)
    for i in range(1, 11):
        clock.now = 10.5 + i * 0.02
        meter.tokens(1)
    sampler.cpu = (1.8, 0.6)
    sampler.rss = 150 * 2**20
    live = meter.snapshot()
    assert live.live and live.finish_reason is None
    clock.now = 11.0
    stats = meter.finish("stop")
    assert not stats.live and stats.finish_reason == "stop"
    assert stats.completion_tokens == 11
    assert stats.ttft_s == pytest.approx(0.5)
    assert stats.prefill_tok_s == pytest.approx(80.0)
    assert stats.decode_tok_s == pytest.approx(50.0)
    assert stats.latency_p50_ms == pytest.approx(20.0)
    assert stats.wall_s == pytest.approx(1.0)
    assert stats.cpu_user_s == pytest.approx(0.8)
    assert stats.cpu_sys_s == pytest.approx(0.1)
    assert stats.cpu_per_wall == pytest.approx(0.9)
    assert stats.rss_now_mib == pytest.approx(150) and stats.rss_peak_mib == pytest.approx(150)
    assert stats.vram_now_mib is None and stats.gpu_util_pct is None  # no GPU: absent, not zero
    assert stats.to_dict()["cpu_total_s"] == pytest.approx(0.9)


def test_meter_without_tokens_reports_absent_rates() -> None:
    clock = Clock()
    meter = Meter(None, clock=clock)
    meter.start()
    clock.now = 10.2
    stats = meter.finish("cancelled")
    assert stats.ttft_s is None and stats.decode_tok_s is None and stats.latency_p90_ms is None
    assert stats.completion_tokens == 0 and stats.wall_s == pytest.approx(0.2)


def test_zero_token_chunk_is_not_a_token() -> None:
    clock = Clock()
    meter = Meter(None, clock=clock)
    meter.start()
    meter.tokens(1)
    meter.tokens(0)
    assert meter.snapshot().completion_tokens == 1


def test_gpu_utilization_is_the_mean_of_the_replys_samples() -> None:
    clock, sampler = Clock(), FakeSampler()
    sampler.vram, sampler.util = 512 * 2**20, 20
    meter = Meter(sampler, interval=3600, clock=clock)  # samples at start() and finish() only
    meter.start()
    assert meter.snapshot().gpu_util_pct == pytest.approx(20)
    sampler.vram, sampler.util = 1024 * 2**20, 90
    clock.now = 11.0
    stats = meter.finish("stop")
    assert stats.gpu_util_pct == pytest.approx(55) and stats.vram_peak_mib == pytest.approx(1024)
    sampler.util = None  # a board that does not report utilization: VRAM still shown
    meter = Meter(sampler, interval=3600, clock=clock)
    meter.start()
    stats = meter.finish("stop")
    assert stats.gpu_util_pct is None and stats.vram_now_mib == pytest.approx(1024)
