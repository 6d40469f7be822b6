"""Side-by-side timing runs (F8), headless and shared by the TUI and the CLI: the runner of a plan
(plan.py), one configuration after another, each in worker.py.

A plan is N configurations x a prompt set with fixed prompt and reply lengths. Each configuration
runs in its own worker process (a crash or OOM is a failed row, memory numbers are its own); the
model is reloaded before every repetition, so each one starts from an empty KV cache and gives a load
time; a warm-up comes first. Every reply is measured by metrics.Meter, the meter of every chat.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from localllm.bench.plan import BenchConfig, BenchPlan, Progress, ProgressFn, load_prompts
from localllm.bench.results import BenchResult, RowResult, build_manifest
from localllm.bench.worker import run_config, sampling_record


def memory_bandwidth() -> float | None:
    """Bytes/s from localllm.machine.bandwidth (measured once, then cached); None when it cannot tell."""
    try:
        from localllm.machine.bandwidth import measured_bandwidth
    except ImportError:  # an install without the hardware feature
        return None
    try:
        gb_s = float(measured_bandwidth())
    except Exception:
        return None
    return gb_s * 1e9 if gb_s > 0 else None


def _unique_labels(configs: list[BenchConfig]) -> list[str]:
    labels: list[str] = []
    seen: dict[str, int] = {}
    for cfg in configs:
        label = cfg.label or cfg.default_label()
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return labels


def run_plan(plan: BenchPlan, progress: ProgressFn | None = None,
             cancel: threading.Event | None = None, log_dir: Path | None = None) -> BenchResult:
    """Run every configuration in turn. Failures are rows; Ctrl-C or `cancel` stops the plan and
    keeps what finished (the result says cancelled)."""
    plan.validate()
    prompts = load_prompts(plan.prompts)
    bandwidth = memory_bandwidth()
    result = BenchResult(build_manifest(plan.to_dict(), prompts.texts(), bandwidth))
    result.manifest["sampling"] = sampling_record(plan)  # the same for every row
    cancel = cancel or threading.Event()
    labels = _unique_labels(plan.configs)
    notify = progress or (lambda p: None)
    for index, (cfg, label) in enumerate(zip(plan.configs, labels, strict=True)):
        if cancel.is_set():
            row = RowResult(label, dataclasses.asdict(cfg), status="skipped",
                            reason="the plan was cancelled before this configuration")
            notify(Progress(index, len(plan.configs), label, "skipped"))
        else:
            try:
                row = run_config(plan, cfg, label, prompts, cancel, notify, log_dir,
                                 index, len(plan.configs))
            except KeyboardInterrupt:  # Ctrl-C on a progress line outside its own handling
                cancel.set()
                row = RowResult(label, dataclasses.asdict(cfg), status="cancelled", reason="interrupted")
        row.summarize(bandwidth)
        result.rows.append(row)
    result.cancelled = cancel.is_set()
    return result
