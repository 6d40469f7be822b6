"""A load sweep's result: its numbers per level (percentiles, throughput, goodput under the SLO), the
whole sweep (SweepResult), and its Markdown: one row per concurrency level, then the knee, the SLO and
what went wrong."""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from localllm.bench.load_plan import RequestSample, Slo, SweepPlan
from localllm.models.endpoints import api_base
from localllm.runtime.metrics import percentile

GOOD_FRACTION = 0.9  # a level meets the SLO when this share of its requests do, and none failed


@dataclass
class Stat:
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    n: int = 0

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        xs = sorted(v for v in values if v is not None)
        if not xs:
            return cls()
        p50, p90, p99 = (percentile(xs, p) for p in (50, 90, 99))
        return cls(statistics.fmean(xs), p50, p90, p99, len(xs))


@dataclass
class LevelResult:
    level: int
    completed: int
    failed: int
    errors: list[str]  # distinct reasons with counts: "3x HTTP 503"
    duration_s: float
    req_s: float
    output_tok_s: float
    total_tok_s: float  # prompt (when the server counts it) + output tokens
    ttft: Stat
    itl: Stat
    tpot: Stat
    e2e: Stat
    goodput_req_s: float
    goodput_fraction: float
    meets_slo: bool
    server_cpu_s: float | None
    server_rss_peak_bytes: int | None
    server_timings: dict | None
    samples: list[RequestSample]
    mean_output_tokens: float | None = None  # tokens received per completed request, on average
    # what the server itself counted over the level (bench.server_watch.ServerCounters): its kind, prompt
    # tokens reused, KV use at peak, preemptions, mean queue and prefill time; only those it gives
    server: dict | None = None


@dataclass
class SweepResult:
    plan: SweepPlan
    levels: list[LevelResult]
    knee: int | None  # the highest level meeting the SLO
    cancelled: bool
    stopped_reason: str
    model: str

    def to_dict(self) -> dict:
        levels = []
        for lr in self.levels:
            d = dataclasses.asdict(lr)
            for sd, s in zip(d["samples"], lr.samples, strict=True):
                sd["tpot_s"] = s.tpot_s
            levels.append(d)
        return {"kind": "load-sweep", "model": self.model, "url": api_base(self.plan.url),
                "plan": dataclasses.asdict(self.plan), "knee": self.knee, "cancelled": self.cancelled,
                "stopped_reason": self.stopped_reason, "levels": levels}


def summarise(level: int, samples: list[RequestSample], duration_s: float, slo: Slo,
              server_cpu_s: float | None = None, server_rss_peak_bytes: int | None = None,
              server: dict | None = None) -> LevelResult:
    ok = [s for s in samples if not s.error]
    failed = [s for s in samples if s.error]
    duration = max(duration_s, 1e-9)
    out = sum(s.output_tokens for s in ok)
    good = [s for s in ok if slo.met_by(s)] if slo.is_set else ok
    fraction = len(good) / len(samples) if samples else 0.0
    timed = [s.server_timings for s in ok if s.server_timings]
    keys = sorted({k for t in timed for k, v in t.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    timings = {k: statistics.fmean(t[k] for t in timed if isinstance(t.get(k), int | float)) for k in keys}
    return LevelResult(
        level=level, completed=len(ok), failed=len(failed),
        errors=[f"{n}x {why}" for why, n in Counter(s.error for s in failed).most_common()],
        duration_s=duration_s, req_s=len(ok) / duration, output_tok_s=out / duration,
        total_tok_s=(out + sum(s.prompt_tokens or 0 for s in ok)) / duration,
        ttft=Stat.of(s.ttft_s for s in ok), itl=Stat.of(g for s in ok for g in s.itl),
        tpot=Stat.of(s.tpot_s for s in ok), e2e=Stat.of(s.e2e_s for s in ok),
        goodput_req_s=len(good) / duration, goodput_fraction=fraction,
        meets_slo=bool(samples) and fraction >= GOOD_FRACTION and not failed,
        server_cpu_s=server_cpu_s, server_rss_peak_bytes=server_rss_peak_bytes,
        server_timings=timings or None, samples=samples,
        mean_output_tokens=statistics.fmean(s.output_tokens for s in ok) if ok else None, server=server)


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = seconds * 1000
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def mib(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:.0f}"


# The server's own counters per level, as Markdown columns: (key in LevelResult.server, heading, format)
SERVER_COLUMNS = (
    ("prompt_tokens_reused", "Reused prompt tok", "{:.0f}"),
    ("kv_use_peak_pct", "KV peak %", "{:.0f}"),
    ("requests_waiting_peak", "Waiting peak", "{:.0f}"),
    ("preemptions", "Preemptions", "{:.0f}"),
    ("queue_time_mean_ms", "Server queue ms", "{:.1f}"),
    ("prefill_time_mean_ms", "Server prefill ms", "{:.1f}"),
    ("prefill_tok_s", "Server prefill tok/s", "{:.1f}"),
    ("decode_tok_s", "Server decode tok/s", "{:.1f}"),
)


def server_columns(levels: list[LevelResult]) -> list[tuple[str, str, str]]:
    """The server columns some level has a figure for (the Markdown table's and the TUI sweep screen's)."""
    return [c for c in SERVER_COLUMNS if any((lr.server or {}).get(c[0]) is not None for lr in levels)]


def server_cells(lr: LevelResult, columns: list[tuple[str, str, str]]) -> list[str]:
    """One level's figures in those columns; "-" where this level has none."""
    cells = []
    for key, _, fmt in columns:
        value = (lr.server or {}).get(key)
        cells.append("-" if value is None else fmt.format(value))
    return cells


def server_note(levels: list[LevelResult]) -> str:
    """"Server: vLLM (no /props)": the kind of server the levels ran against and what it did not answer;
    "" when no level knows the kind."""
    kinds = {str(lr.server["kind"]) for lr in levels if lr.server and lr.server.get("kind")}
    if not kinds:
        return ""
    lacks = sorted({m for lr in levels for m in (lr.server or {}).get("missing", [])})
    return f"Server: {', '.join(sorted(kinds))}" + (f" (no {', '.join(lacks)})" if lacks else "")


def _row(lr: LevelResult, server: bool, counters: list[tuple[str, str, str]] | None = None) -> list[str]:
    mean_tokens = "-" if lr.mean_output_tokens is None else f"{lr.mean_output_tokens:.1f}"
    cells = [str(lr.level), f"{lr.completed}/{lr.failed}", rate(lr.req_s), rate(lr.output_tok_s), mean_tokens,
             ms(lr.ttft.p50), ms(lr.ttft.p90), ms(lr.ttft.p99), ms(lr.itl.p50), ms(lr.tpot.p50),
             ms(lr.tpot.p90), ms(lr.e2e.p50), ms(lr.e2e.p90),
             f"{rate(lr.goodput_req_s)} ({lr.goodput_fraction:.0%})" + (" ✓" if lr.meets_slo else "")]
    if server:
        cells += ["-" if lr.server_cpu_s is None else f"{lr.server_cpu_s:.1f}", mib(lr.server_rss_peak_bytes)]
    return cells + server_cells(lr, counters or [])


def markdown(result: SweepResult) -> str:
    plan = result.plan
    head = ["Concurrency", "OK/failed", "req/s", "out tok/s", "tok/req", "TTFT p50 ms", "TTFT p90 ms", "TTFT p99 ms",
            "ITL p50 ms", "TPOT p50 ms", "TPOT p90 ms", "E2E p50 ms", "E2E p90 ms", "Goodput req/s"]
    server = any(lr.server_cpu_s is not None or lr.server_rss_peak_bytes is not None for lr in result.levels)
    if server:
        head += ["Server CPU s", "Server RSS peak MiB"]
    counters = server_columns(result.levels)
    head += [heading for _, heading, _ in counters]
    per_level = f"{plan.requests} requests" if plan.requests is not None else f"{plan.duration_s:g} s"
    lines = [f"Load sweep of {result.model} at {plan.url.partition('#')[0]}: {per_level} per level, "
             f"~{plan.prompt_tokens} prompt tokens, {plan.gen_tokens} new tokens.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_row(lr, server, counters)) + " |" for lr in result.levels]
    lines.append("")
    note = server_note(result.levels)
    if note:
        lines.append(note + "; tok/req: tokens received per completed request.")
    slo = plan.slo.describe()
    if result.knee is not None:
        lines.append(f"Knee: concurrency {result.knee}, the highest level meeting the SLO ({slo}: at "
                     "least 90% of requests within it and none failed).")
    else:
        lines.append(f"Knee: no level met the SLO ({slo}: at least 90% of requests within it and none failed).")
    for lr in result.levels:
        if lr.errors:
            lines.append(f"Concurrency {lr.level} failures: {', '.join(lr.errors)}.")
    if result.stopped_reason:
        lines.append(f"Stopped early: {result.stopped_reason}.")
    if result.cancelled:
        lines.append("Cancelled: the last level is partial.")
    return "\n".join(lines) + "\n"
