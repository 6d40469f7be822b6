"""Serving-style load sweeps: N concurrent streams against an OpenAI-compatible server, level by level.

Each level runs `level` worker threads, each with its own openai SDK client; a worker takes the next
request until the level's requests (or its duration) are used up. Every request is kept raw (arrival
time of each content chunk); TTFT, ITL, TPOT, E2E percentiles, throughput and goodput under an SLO are
derived from them. When the server runs on this machine, its CPU time and peak RSS are measured too;
whatever the server counts itself (`/metrics`: prompt tokens reused, KV use, preemptions, queue and
prefill time) is read before and after each level.

This module runs the sweep; load_plan holds the plan, the SLO and the samples, load_client one level's
requests, server_watch the server's CPU and RSS, load_report the figures, the result (SweepResult) and
the Markdown table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from localllm.bench.load_client import LevelRun, pick_model
from localllm.bench.load_plan import RequestSample, Slo, SweepPlan
from localllm.bench.load_report import LevelResult, Stat, SweepResult, markdown, summarise
from localllm.bench.server_watch import ServerCounters, ServerWatch
from localllm.models.endpoints import server_pid
from localllm.models.server_stats import ServerStatsReader

__all__ = ["Slo", "SweepPlan", "RequestSample", "Stat", "LevelResult", "SweepResult", "run_sweep",
           "markdown"]


def run_sweep(plan: SweepPlan, progress: Callable[[str], None] | None = None,
              cancel: threading.Event | None = None,
              on_level: Callable[[LevelResult], None] | None = None) -> SweepResult:
    """Run every level in order. `progress` (a line) and `on_level` (each finished level, for a live
    chart) are called from this thread. Raises BenchError when the plan
    is invalid or the server does not list its models; a server that stops answering mid-sweep ends
    the sweep with `stopped_reason`, keeping the levels run so far."""
    plan.validate()
    cancel = cancel or threading.Event()
    say = progress or (lambda _line: None)
    model = pick_model(plan)
    pid = server_pid(plan.url)
    reader = ServerStatsReader(plan.url, plan.key_env, model) if plan.server_counters else None
    result = SweepResult(plan, [], None, False, "", model)
    for level in plan.levels:
        if cancel.is_set():
            break
        say(f"concurrency {level}: starting")
        runner = LevelRun(plan, model, level, cancel)
        with ServerWatch(pid) as watch, ServerCounters(reader) as counters:
            samples, duration = runner.run(say)
        result.levels.append(summarise(level, samples, duration, plan.slo, watch.cpu_s, watch.rss_peak,
                                       counters.figures))
        if on_level is not None:
            on_level(result.levels[-1])
        if runner.stop_reason and not cancel.is_set():
            result.stopped_reason = f"the server stopped answering at level {level}: {runner.stop_reason}"
            say(result.stopped_reason)
            break
    result.cancelled = cancel.is_set()
    result.knee = max((lr.level for lr in result.levels if lr.meets_slo), default=None)
    return result
