"""One configuration of a benchmark plan, in a worker process of its own: load (timed from the
request to "loaded"), prompts fitted to an exact token count, warm-up, repetitions measured by the
Meter, optional perplexity; the worker is closed after, so its memory goes back to the OS."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localllm.backends.base import Message, ModelInfo
from localllm.bench.errors import BenchError
from localllm.bench.plan import DATA, BenchConfig, BenchPlan, Progress, PromptSet
from localllm.bench.results import RowResult, prompt_hash
from localllm.config import LoadOptions, SamplingParams
from localllm.errors import LocalLLMError
from localllm.runtime.metrics import ReplyStats
from localllm.runtime.model_process import meter_for, worker_runtime
from localllm.runtime.worker import WorkerClient, meter_event


@dataclass
class FittedPrompt:
    messages: list[Message]
    n_tokens: int


def fit_prompt(count: Callable[[list[Message]], int], system: str, prompt: str, filler: str,
               n: int) -> FittedPrompt:
    """Messages whose rendered chat prompt has exactly n tokens by the model's own tokenizer (the
    worker's count op): the prompt is padded with filler, then cut at the character where the
    count reaches n, found by bisection. If one character adds two tokens there, the closest
    count below n is used (the row records the real count)."""
    def messages(text: str) -> list[Message]:
        return [{"role": "system", "content": system}, {"role": "user", "content": text}]

    floor = count(messages(""))
    if floor > n:
        raise BenchError(f"The chat template and system prompt alone take {floor} tokens, more than "
                         f"the {n}-token prompt asked for; ask for at least {floor} (--prompt-tokens).")
    source, have = prompt, count(messages(prompt))
    while have < n:
        grown = count(messages(f"{source} {filler}"))
        if grown <= have:
            raise BenchError("The prompt filler adds no tokens; the prompt cannot be padded.")
        source, have = f"{source} {filler}", grown
    lo, hi = 0, len(source)
    while lo < hi:  # the shortest cut whose count reaches n
        mid = (lo + hi) // 2
        if count(messages(source[:mid])) >= n:
            hi = mid
        else:
            lo = mid + 1
    cut, got = lo, count(messages(source[:lo]))
    while got > n and cut > 0:
        cut -= 1
        got = count(messages(source[:cut]))
    return FittedPrompt(messages(source[:cut]), got)


def measure_reply(client: WorkerClient, model: ModelInfo, messages: list[Message],
                  sampling: SamplingParams) -> ReplyStats:
    """One reply through the worker, metered exactly as a chat reply is (model_process.meter_for)."""
    meter = meter_for(model, client.pid)
    meter.start()
    reason = "error"
    try:
        for event in client.chat(messages, sampling):
            _, done = meter_event(meter, event)
            reason = done or reason
    except LocalLLMError as exc:
        raise LocalLLMError(f"The reply failed: {exc}") from None
    finally:
        stats = meter.finish(reason)  # also stops the memory sampler thread
    return stats


def _check(plan: BenchPlan, cfg: BenchConfig, n_ctx: int) -> None:
    """Refuse early what cannot run: unknown backend, prompt + reply longer than the context."""
    from localllm.backends import registry
    from localllm.errors import BackendNotInstalled

    if cfg.backend not in registry.BACKENDS:
        raise BenchError(f"Unknown backend {cfg.backend!r}; known: {', '.join(registry.BACKENDS)}.")
    if not registry.is_installed(cfg.backend):
        raise BackendNotInstalled(cfg.backend, registry.BACKENDS[cfg.backend][3])
    need = prompt_length(plan, cfg) + plan.gen_tokens
    if need > n_ctx:
        raise BenchError(f"The prompt ({prompt_length(plan, cfg)} tokens) and the reply ({plan.gen_tokens}) "
                         f"need {need} tokens but the context holds {n_ctx}. Use a larger context (--context) "
                         "or fewer tokens (--prompt-tokens / --tokens / --depth).")


def prompt_length(plan: BenchPlan, cfg: BenchConfig) -> int:
    """At depth D the context already holds D tokens when the reply starts: the prompt is D longer."""
    return plan.prompt_tokens + cfg.depth


def _load(client: WorkerClient, path: str, options: LoadOptions, backend: str) -> tuple[float, ModelInfo]:
    t0 = time.perf_counter()
    info = client.load(path, options, backend)
    return time.perf_counter() - t0, info


def _perplexity(client: WorkerClient, plan: BenchPlan) -> dict:
    text = plan.perplexity_text or (DATA / "perplexity.txt").read_text(encoding="utf-8")
    client.send({"op": "perplexity", "text": text})
    while True:
        event = client.next_event()
        if event["ev"] == "perplexity":
            return {k: event.get(k) for k in ("ppl", "tokens", "chunks", "n_ctx")}
        if event["ev"] == "error":  # e.g. a backend without logits: the column stays empty
            return {"ppl": None, "error": event["message"]}


def _peak_rss_mib(pid: int) -> float | None:
    """The kernel's high-water mark of the process's RSS (Linux), load included."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _watch(cancel: threading.Event, client: WorkerClient, done: threading.Event) -> None:
    """Relay a cancel to the worker at once, so a long reply stops mid-way."""
    while not done.is_set():
        if cancel.wait(0.2):
            client.cancel()
            return


def run_config(plan: BenchPlan, cfg: BenchConfig, label: str, prompts: PromptSet,
               cancel: threading.Event, notify: Callable[[Progress], None], log_dir: Path | None,
               index: int = 0, total: int = 1) -> RowResult:
    """Run one configuration; every failure becomes the row's reason, never an exception."""
    row = RowResult(label, dataclasses.asdict(cfg), gen_tokens=plan.gen_tokens)

    def say(phase: str, **kw) -> None:
        notify(Progress(index, total, label, phase, **kw))

    say("start")
    client: WorkerClient | None = None
    done = threading.Event()
    watcher: threading.Thread | None = None
    try:
        _check(plan, cfg, cfg.n_ctx)
        path = cfg.path()
        if cfg.backend == "llama_cpp":
            from localllm.models.gguf_check import inspect_gguf

            gguf = inspect_gguf(path)  # a clear reason before llama.cpp can abort on a bad file
            row.size_bytes, row.bits_per_weight = gguf.size_bytes, round(gguf.bits_per_weight, 2)
        python, env = worker_runtime(path, cfg.backend)  # GPTQ checkpoints run in GPTQModel's environment
        client = WorkerClient(log_dir, python=python, env=env)
        client.start()
        watcher = threading.Thread(target=_watch, args=(cancel, client, done), daemon=True)
        watcher.start()
        if cfg.batch:
            _batch_repetitions(plan, cfg, path, client, row, cancel, say)
        else:
            _repetitions(plan, cfg, path, prompts, client, row, cancel, say)
        if plan.perplexity and not cancel.is_set():
            say("perplexity")
            row.perplexity = _perplexity(client, plan)
        row.rss_hwm_mib = _peak_rss_mib(client.pid)
        _calibrate(plan, cfg, path, row)
    except KeyboardInterrupt:
        cancel.set()
    except LocalLLMError as exc:
        row.status, row.reason = "failed", str(exc)
    except Exception as exc:  # e.g. a worker that never said ready: this row fails, the plan goes on
        row.status, row.reason = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        done.set()
        if watcher is not None:
            watcher.join()  # it may be sending a cancel: the pipe must stay open until it is done
        if client is not None:
            client.cancel()  # a reply cut short by Ctrl-C stops now, so exit is read at once
            client.close()
    if cancel.is_set() and row.status == "ok":
        row.status = "cancelled"
        row.reason = f"cancelled after {len(row.reps)} of {plan.reps} repetitions"
    say(row.status if row.status != "ok" else "done", message=row.reason.split("\n")[0])
    return row


def _load_options(plan: BenchPlan, cfg: BenchConfig) -> LoadOptions:
    """How every repetition of a row loads its model, streamed or batched alike."""
    return LoadOptions(context=cfg.n_ctx, threads=cfg.n_threads, gpu_layers=cfg.n_gpu_layers,
                       seed=plan.seed, quantization=cfg.load_in, kv_type=cfg.kv_type)


def bench_sampling(plan: BenchPlan) -> SamplingParams:
    """Every timing run samples alike, whatever the model's own defaults, so rows compare: the app's
    defaults, a fixed-length reply (EOS ignored) and the plan's seed."""
    return SamplingParams(max_tokens=plan.gen_tokens, ignore_eos=True, seed=plan.seed)


def sampling_record(plan: BenchPlan) -> dict[str, dict[str, Any]]:
    """bench_sampling with each value's source, for the manifest (as `chat --json` shows a chat's)."""
    from_plan = ("max_tokens", "ignore_eos", "seed")
    return {k: {"value": v, "from": "bench_plan" if k in from_plan else "default"}
            for k, v in dataclasses.asdict(bench_sampling(plan)).items()}


def _repetitions(plan: BenchPlan, cfg: BenchConfig, path: str, prompts: PromptSet,
                 client: WorkerClient, row: RowResult, cancel: threading.Event, say) -> None:
    options = _load_options(plan, cfg)
    sampling = bench_sampling(plan)
    runs = plan.warmup + plan.reps
    fitted: list[FittedPrompt] = []
    for i in range(runs):
        if cancel.is_set():
            return
        # A reload per run: each starts from an empty KV cache (no prompt reuse) and times a load.
        load_s, info = _load(client, path, options, cfg.backend)
        if not fitted:
            row.model = dataclasses.asdict(info)
            row.size_bytes = row.size_bytes or info.size_bytes or None
            row.first_load_s = load_s
            _check(plan, cfg, info.n_ctx)  # llama.cpp may give a smaller context than asked
            want = prompt_length(plan, cfg)
            fitted = [fit_prompt(client.count_tokens, prompts.system, p, prompts.filler, want)
                      for p in prompts.prompts[:runs]]
            row.prompt_tokens = fitted[0].n_tokens
            row.prompt_sha256 = prompt_hash([m["content"] for f in fitted for m in f.messages])
            off = sorted({f.n_tokens for f in fitted if f.n_tokens != want})
            if off:
                row.notes.append(f"prompt fitted to {off} tokens, not exactly {want}")
            if cfg.depth:
                row.notes.append(f"decode measured with {cfg.depth} tokens of context already filled")
            say("loaded", message=f"{info.quant}, ctx {info.n_ctx}, {info.n_threads} threads, "
                                  f"first load {load_s:.2f} s")
        stats = measure_reply(client, info, fitted[i % len(fitted)].messages, sampling)
        if cancel.is_set():
            return  # a reply cut short is not a measurement
        warm = i < plan.warmup
        if stats.completion_tokens != plan.gen_tokens:
            row.notes.append(f"run {i + 1} generated {stats.completion_tokens} of {plan.gen_tokens} tokens "
                             f"({stats.finish_reason})")
        if not warm:
            row.reps.append({**stats.to_dict(), "load_s": load_s})
        say("warmup" if warm else "rep", rep=i + 1 if warm else i + 1 - plan.warmup,
            reps=plan.warmup if warm else plan.reps, stats=stats)


def _batch_repetitions(plan: BenchPlan, cfg: BenchConfig, path: str, client: WorkerClient, row: RowResult,
                       cancel: threading.Event, say) -> None:
    """Seed 002's batch rows: B prompts of the plan's length generated together, reloaded per run like
    the streamed rows. The worker times each decode step; CPU and RSS are the worker's own."""
    import psutil

    from localllm.runtime.metrics import percentile

    options = _load_options(plan, cfg)
    proc = psutil.Process(client.pid)
    for i in range(plan.warmup + plan.reps):
        if cancel.is_set():
            return
        load_s, info = _load(client, path, options, cfg.backend)
        if i == 0:
            row.model, row.first_load_s = dataclasses.asdict(info), load_s
            row.size_bytes = row.size_bytes or info.size_bytes or None
            row.prompt_tokens = plan.prompt_tokens
            say("loaded", message=f"{info.quant}, batch {cfg.batch}, first load {load_s:.2f} s")
        cpu = proc.cpu_times()
        timing = client.batch(plan.prompt_tokens, plan.gen_tokens, cfg.batch, plan.seed)
        used = proc.cpu_times()
        if not timing.supported:
            raise BenchError(f"batch {cfg.batch} is not supported here: {timing.reason}")
        steps_ms = [s * 1000 for s in timing.step_s]
        wall = timing.prefill_s + timing.decode_s
        user, system = used.user - cpu.user, used.system - cpu.system
        rep = {"batch": cfg.batch, "ttft_s": timing.prefill_s, "prefill_tok_s": timing.prefill_tok_s,
               "decode_tok_s": timing.throughput_tok_s, "step_ms": timing.step_ms_mean,
               "latency_p50_ms": percentile(steps_ms, 50), "latency_p90_ms": percentile(steps_ms, 90),
               "wall_s": wall, "cpu_user_s": user, "cpu_sys_s": system, "cpu_total_s": user + system,
               "cpu_per_wall": (user + system) / wall if wall else None,
               "rss_peak_mib": proc.memory_info().rss / 2**20, "load_s": load_s, "step_s": timing.step_s,
               "completion_tokens": timing.new_tokens}
        if i >= plan.warmup:
            row.reps.append(rep)
        say("warmup" if i < plan.warmup else "rep", rep=i + 1 if i < plan.warmup else i + 1 - plan.warmup,
            reps=plan.warmup if i < plan.warmup else plan.reps,
            message=f"{timing.throughput_tok_s:.1f} tok/s over {cfg.batch} sequences")


def _calibrate(plan: BenchPlan, cfg: BenchConfig, path: str, row: RowResult) -> None:
    """A streamed GGUF row on the CPU is a calibration point for this machine's speed estimates
    (machine.estimate.record_decode), as each chat reply is."""
    import statistics

    rates = [r["decode_tok_s"] for r in row.reps if r.get("decode_tok_s")]
    if cfg.backend != "llama_cpp" or cfg.batch or not rates or row.model.get("n_gpu_layers"):
        return
    from localllm.machine.bandwidth import cached_bandwidth
    from localllm.machine.estimate import estimate_memory, record_decode
    from localllm.models.catalog import ModelSpec

    gb_s = cached_bandwidth()
    if not gb_s:
        return
    try:
        spec = ModelSpec.from_gguf(path)
        est = estimate_memory(spec, "gguf", spec.gguf_quant, row.model.get("n_ctx") or cfg.n_ctx, calibrate=False)
        record_decode(spec, est, statistics.median(rates), gb_s,
                      fill=(row.prompt_tokens or plan.prompt_tokens) + plan.gen_tokens // 2)
    except (LocalLLMError, OSError, ValueError):  # information only: the row stands without it
        return

