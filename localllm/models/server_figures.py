"""What a server's own counters mean: its `/metrics` body parsed into samples, and, per server kind,
which samples give which figure of a `ServerStats` (rates from counter deltas between two snapshots).
Apart from models.server_stats, which asks the server (HTTP, its kind from what it answers): this
part does no I/O, so the bench's sweep computes a level's figures from two snapshots it took itself.

`/metrics` bodies are read with prometheus_client's parser; a body it refuses as a whole is read line
by line, so one garbage line costs that line only. A counter that went down (the server restarted)
counts from 0.

The metric names were checked against each project's source:
- llama-server (llama.cpp `tools/server`, the `/metrics` handler of 2025 builds, `--metrics` on):
  counters `llamacpp:prompt_tokens_total`, `prompt_seconds_total`, `tokens_predicted_total`,
  `tokens_predicted_seconds_total`, `n_decode_total`, `n_busy_slots_per_decode` (typed counter there,
  an average in fact), later builds also `prompt_tokens_cached_total` and the spec-decode counters
  `spec_decode_num_draft_tokens_total` / `spec_decode_num_accepted_tokens_total`; gauges
  `requests_processing`, `requests_deferred`, `prompt_tokens_seconds`, `predicted_tokens_seconds`;
  older builds `kv_cache_usage_ratio`. `/props` (`total_slots`, `default_generation_settings`, `role`
  "router" in router mode, where `?model=` picks the model) and `/slots` answer without `--metrics`.
- vLLM (`vllm/v1/metrics/loggers.py`, V1 engine, 0.10-0.11 era): gauges `vllm:num_requests_running`,
  `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc` (a fraction, 1 = full; V0 named it
  `gpu_cache_usage_perc`); counters (exposed with `_total`) `vllm:prompt_tokens`,
  `vllm:generation_tokens`, `vllm:prefix_cache_queries`, `vllm:prefix_cache_hits`,
  `vllm:num_preemptions`, `vllm:spec_decode_num_drafts`, `spec_decode_num_draft_tokens`,
  `spec_decode_num_accepted_tokens`; histograms `vllm:request_queue_time_seconds`,
  `vllm:request_prefill_time_seconds`, `vllm:time_to_first_token_seconds`, ...; labels
  `model_name` and `engine` (summed here over label sets).
- SGLang (`python/sglang/srt/metrics/collector.py`, 0.4-0.5 era, `--enable-metrics`): gauges
  `sglang:num_running_reqs`, `sglang:num_queue_reqs`, `sglang:token_usage`; counters
  `sglang:prompt_tokens_total`, `sglang:generation_tokens_total`, `sglang:cached_tokens_total` (by
  `cache_source` in later builds: summed); histogram `sglang:queue_time_seconds`; label `model_name`.
- Ollama: `/api/ps` (loaded models: size, size_vram, context_length, expires_at).
- LM Studio: its REST API `/api/v0/models` (each model's `state`, `max_context_length`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# The kinds, as named to the user.
LLAMA_SERVER, VLLM, SGLANG, OLLAMA, LM_STUDIO, OPENAI = (
    "llama-server", "vLLM", "SGLang", "Ollama", "LM Studio", "OpenAI-compatible")

Samples = dict[str, float]  # sample name (labels summed) -> value


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text body, its label sets summed per sample name (`_bucket` samples
    are kept per `le`: `name_bucket{le="0.1"}`; a counter also under its name without `_total`). NaN
    and infinite values are dropped."""
    from prometheus_client.parser import text_string_to_metric_families

    def add(out: Samples, body: str) -> None:
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                value = float(s.value)
                if not math.isfinite(value):
                    continue
                name = s.name
                if name.endswith("_bucket") and "le" in s.labels:
                    name = f'{name}{{le="{s.labels["le"]}"}}'
                out[name] = out.get(name, 0.0) + value
                if family.type == "counter" and name == family.name + "_total":
                    # the parser adds `_total` to a counter sample that lacks it (llama-server's
                    # n_busy_slots_per_decode): the name as written is kept too
                    out[family.name] = out.get(family.name, 0.0) + value

    out: Samples = {}
    try:
        add(out, text)
        return out
    except Exception:  # a line the parser refuses spoils the whole body: read it line by line
        out.clear()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            add(out, line + "\n")
        except Exception:
            continue
    return out


def counter_delta(before: float | None, after: float | None) -> float | None:
    """after - before; a counter that went down was reset (the server restarted): it counts from 0."""
    if after is None:
        return None
    if before is None:
        return None
    return after - before if after >= before else after


@dataclass
class ServerStats:
    """One sample of what a server says about itself; None: the server does not give that figure."""

    kind: str
    url: str
    at: float  # time.time() of the sample
    sources: list[str] = field(default_factory=list)  # what answered: "/metrics", "/props", ...
    missing: list[str] = field(default_factory=list)  # what did not, and how to turn it on
    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_use_pct: float | None = None  # 0-100
    prompt_tokens_total: float | None = None  # since the server started
    prompt_tokens_cached_total: float | None = None
    # over the window since the previous sample (a reply, a sweep level)
    prompt_tokens: float | None = None
    prompt_tokens_cached: float | None = None
    prefill_tok_s: float | None = None
    decode_tok_s: float | None = None
    draft_acceptance_pct: float | None = None
    preemptions: float | None = None
    queue_time_mean_s: float | None = None
    prefill_time_mean_s: float | None = None
    window_s: float | None = None
    slots: int | None = None
    loaded: list[dict[str, Any]] = field(default_factory=list)  # Ollama / LM Studio: each loaded model

    def to_dict(self) -> dict[str, Any]:
        """The figures the server gives, rounded; those it does not give are left out."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is None or value == [] or key == "at":
                continue
            out[key] = round(value, 3) if isinstance(value, float) else value
        return out

    def figures(self) -> list[tuple[str, str]]:
        """(label, text) of each figure given, for a panel."""
        rows: list[tuple[str, str]] = []

        def add(label: str, value: float | None, fmt: str) -> None:
            if value is not None:
                rows.append((label, fmt.format(value)))

        add("running", self.requests_running, "{:.0f}")
        add("waiting", self.requests_waiting, "{:.0f}")
        add("KV use", self.kv_use_pct, "{:.0f}%")
        total = (self.prompt_tokens or 0) + (self.prompt_tokens_cached or 0)
        if self.prompt_tokens_cached is not None and total > 0:  # a window with a prompt in it
            rows.append(("cached", f"{self.prompt_tokens_cached:.0f}/{total:.0f} tok"))
        add("prefill", self.prefill_tok_s, "{:.1f} tok/s")
        add("decode", self.decode_tok_s, "{:.1f} tok/s")
        add("draft acc", self.draft_acceptance_pct, "{:.0f}%")
        add("preempted", self.preemptions, "{:.0f}")
        add("queue", None if self.queue_time_mean_s is None else self.queue_time_mean_s * 1000, "{:.0f} ms")
        for m in self.loaded[:2]:
            vram = m.get("size_vram")
            rows.append(("loaded", str(m.get("name", "?"))
                         + (f" ({int(vram) / 2**20:.0f} MiB VRAM)" if isinstance(vram, int | float) else "")))
        return rows


@dataclass
class Snapshot:
    """What the server answered at one moment: its raw samples, before any delta."""

    kind: str
    at: float
    samples: Samples
    sources: list[str]
    missing: list[str]
    slots: int | None = None
    loaded: list[dict[str, Any]] = field(default_factory=list)


def _sum(samples: Samples, *names: str) -> float | None:
    found = [samples[n] for n in names if n in samples]
    return sum(found) if found else None


def _pct(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None or whole <= 0:
        return None
    return 100.0 * part / whole


def _gauges(out: ServerStats, s: Samples, running: str, waiting: str, kv_ratio: float | None,
            prompt_total: str, cached_total: str) -> None:
    """What every Prometheus-speaking kind gives under its own names: requests running and waiting, KV
    use (its ratio as a percentage), and its prompt and cached-prompt token counters as they stand."""
    out.requests_running = s.get(running)
    out.requests_waiting = s.get(waiting)
    out.kv_use_pct = None if kv_ratio is None else 100 * kv_ratio
    out.prompt_tokens_total = s.get(prompt_total)
    out.prompt_tokens_cached_total = s.get(cached_total)


def stats_between(prev: Snapshot | None, raw: Snapshot, url: str) -> ServerStats:
    """The figures of `raw`, with token counts, rates and histogram means over the window since `prev`."""
    s, p = raw.samples, (prev.samples if prev is not None else None)
    out = ServerStats(kind=raw.kind, url=url, at=raw.at, sources=raw.sources, missing=raw.missing,
                      slots=raw.slots, loaded=raw.loaded)
    if prev is not None:
        out.window_s = max(raw.at - prev.at, 0.0)

    def d(name: str) -> float | None:
        if p is None:
            return None
        return counter_delta(p.get(name), s.get(name))

    def ratio(num: float | None, den: float | None) -> float | None:
        return None if num is None or den is None or den <= 0 else num / den

    def hist_mean(base: str) -> float | None:
        return ratio(d(base + "_sum"), d(base + "_count"))

    if raw.kind == LLAMA_SERVER:
        L = "llamacpp:"
        _gauges(out, s, L + "requests_processing", L + "requests_deferred", s.get(L + "kv_cache_usage_ratio"),
                L + "prompt_tokens_total", L + "prompt_tokens_cached_total")
        out.prompt_tokens = d(L + "prompt_tokens_total")
        out.prompt_tokens_cached = d(L + "prompt_tokens_cached_total")
        out.prefill_tok_s = ratio(out.prompt_tokens, d(L + "prompt_seconds_total"))
        out.decode_tok_s = ratio(d(L + "tokens_predicted_total"), d(L + "tokens_predicted_seconds_total"))
        acc = d(L + "spec_decode_num_accepted_tokens_total")
        out.draft_acceptance_pct = _pct(acc, d(L + "spec_decode_num_draft_tokens_total"))
    elif raw.kind == VLLM:
        V = "vllm:"
        kv = _sum(s, V + "kv_cache_usage_perc") if V + "kv_cache_usage_perc" in s else s.get(
            V + "gpu_cache_usage_perc")
        _gauges(out, s, V + "num_requests_running", V + "num_requests_waiting", kv, V + "prompt_tokens_total",
                V + "prefix_cache_hits_total")
        hits = d(V + "prefix_cache_hits_total")
        prompt = d(V + "prompt_tokens_total")
        out.prompt_tokens_cached = hits
        # vLLM counts every prompt token in prompt_tokens, the reused ones too
        out.prompt_tokens = None if prompt is None else max(prompt - (hits or 0), 0.0)
        out.preemptions = d(V + "num_preemptions_total")
        out.draft_acceptance_pct = _pct(d(V + "spec_decode_num_accepted_tokens_total"),
                                        d(V + "spec_decode_num_draft_tokens_total"))
        out.queue_time_mean_s = hist_mean(V + "request_queue_time_seconds")
        out.prefill_time_mean_s = hist_mean(V + "request_prefill_time_seconds")
        out.prefill_tok_s = ratio(out.prompt_tokens, d(V + "request_prefill_time_seconds_sum"))
        out.decode_tok_s = ratio(d(V + "generation_tokens_total"), d(V + "request_decode_time_seconds_sum"))
    elif raw.kind == SGLANG:
        G = "sglang:"
        _gauges(out, s, G + "num_running_reqs", G + "num_queue_reqs", s.get(G + "token_usage"),
                G + "prompt_tokens_total", G + "cached_tokens_total")
        out.prompt_tokens_cached = d(G + "cached_tokens_total")
        prompt = d(G + "prompt_tokens_total")
        out.prompt_tokens = None if prompt is None else max(prompt - (out.prompt_tokens_cached or 0), 0.0)
        out.queue_time_mean_s = hist_mean(G + "queue_time_seconds")
    return out
