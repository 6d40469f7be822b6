"""What a model server says about itself: its kind, found from what it answers, and a typed snapshot of
its own figures (requests running and waiting, KV use, prompt tokens and those reused from its cache,
its prefill and decode rates, draft acceptance, preemptions), each only when the server gives it.

`/metrics` bodies are read with prometheus_client's parser; a body it refuses as a whole is read line
by line, so one garbage line costs that line only. Rates come from counter deltas between two samples;
a counter that went down (the server restarted) counts from 0.

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

import json
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from localllm.models.endpoints import DEFAULT_KEY_ENV, api_base, split_model

PROBE_TIMEOUT_S = 2.0
MAX_BODY = 4 * 2**20  # a /metrics body is a few KiB; more is not read

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


def server_root(url: str) -> str:
    """http://host:port of a URL given as .../v1, ...#model or bare."""
    base = api_base(url)
    return base[: -len("/v1")]


def _sum(samples: Samples, *names: str) -> float | None:
    found = [samples[n] for n in names if n in samples]
    return sum(found) if found else None


def _pct(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None or whole <= 0:
        return None
    return 100.0 * part / whole


class ServerStatsReader:
    """Finds a server's kind once (`probe`), then samples it; each sample's rates and token counts are
    over the window since the one before. Never raises for a server that answers oddly: what it does
    not give is named in `missing`."""

    def __init__(self, url: str, key_env: str | None = DEFAULT_KEY_ENV, model: str = "",
                 timeout: float = PROBE_TIMEOUT_S) -> None:
        self.url = url
        self.root = server_root(url)
        self.model = model or split_model(url)[1]
        self.timeout = timeout
        key = os.environ.get(key_env or DEFAULT_KEY_ENV) if key_env is not None else None
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.kind: str | None = None
        self._router = False
        self._props: dict[str, Any] | None = None
        self._prev: Snapshot | None = None

    # --- HTTP -------------------------------------------------------------------------------------
    def _get(self, path: str) -> tuple[int, str] | None:
        """(status, body) or None when nothing answered."""
        req = urllib.request.Request(self.root + path, headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (http only)
                return int(resp.status), resp.read(MAX_BODY).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except (OSError, ValueError):
            return None

    def _json(self, path: str) -> Any:
        got = self._get(path)
        if got is None or got[0] != 200:
            return None
        try:
            return json.loads(got[1])
        except ValueError:
            return None

    def _metrics_path(self) -> str:
        if self._router and self.model:
            return "/metrics?" + urllib.parse.urlencode({"model": self.model})
        return "/metrics"

    # --- kind ------------------------------------------------------------------------------------
    def probe(self) -> str:
        """The server's kind, from what it answers: `/metrics` prefixes, llama-server's `/props`,
        Ollama's `/api/ps`, LM Studio's `/api/v0/models`; else "OpenAI-compatible"."""
        if self.kind is not None:
            return self.kind
        props = self._json("/props")
        if isinstance(props, dict) and ("default_generation_settings" in props or "total_slots" in props
                                        or props.get("role") == "router"):
            self._router = props.get("role") == "router"
            self._props = props
            self.kind = LLAMA_SERVER
            return self.kind
        got = self._get("/metrics")
        if got is not None and got[0] == 200:
            names = " ".join(parse_metrics(got[1]))
            for prefix, kind in (("llamacpp:", LLAMA_SERVER), ("vllm:", VLLM), ("sglang:", SGLANG)):
                if prefix in names:
                    self.kind = kind
                    return kind
        ps = self._json("/api/ps")
        if isinstance(ps, dict) and isinstance(ps.get("models"), list):
            self.kind = OLLAMA
            return self.kind
        lms = self._json("/api/v0/models")
        if isinstance(lms, dict) and isinstance(lms.get("data"), list) and any(
                isinstance(m, dict) and "state" in m for m in lms["data"]):
            self.kind = LM_STUDIO
            return self.kind
        self.kind = OPENAI
        return self.kind

    # --- one sample ------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        kind = self.probe()
        raw = Snapshot(kind, time.time(), {}, [], [])
        if kind in (LLAMA_SERVER, VLLM, SGLANG):
            got = self._get(self._metrics_path())
            if got is not None and got[0] == 200:
                raw.samples = parse_metrics(got[1])
                raw.sources.append("/metrics")
            else:
                hint = " (start llama-server with --metrics)" if kind == LLAMA_SERVER else (
                    " (start SGLang with --enable-metrics)" if kind == SGLANG else "")
                raw.missing.append(f"/metrics{hint}")
        if kind == LLAMA_SERVER:
            if self._props is None:  # its configuration: asked once
                props = self._json("/props")
                self._props = props if isinstance(props, dict) else {}
            if self._props:
                raw.sources.append("/props")
                slots = self._props.get("total_slots")
                raw.slots = slots if isinstance(slots, int) else None
            # /slots only where /metrics is off: each request to either is a task in llama-server's
            # loop, and the panel and sweeps ask every second or half second
            if "/metrics" not in raw.sources:
                slot_list = self._json("/slots")
                if isinstance(slot_list, list):  # requests running, counted from its slots
                    raw.sources.append("/slots")
                    busy = sum(1 for s in slot_list if isinstance(s, dict) and s.get("is_processing"))
                    raw.samples["llamacpp:requests_processing"] = float(busy)
                else:
                    raw.missing.append("/slots (start llama-server with --slots)")
        elif kind == OLLAMA:
            ps = self._json("/api/ps")
            if isinstance(ps, dict) and isinstance(ps.get("models"), list):
                raw.sources.append("/api/ps")
                raw.loaded = [{k: m.get(k) for k in ("name", "size", "size_vram", "context_length", "expires_at")
                               if k in m} for m in ps["models"] if isinstance(m, dict)]
            raw.missing.append("/metrics (Ollama has none)")
        elif kind == LM_STUDIO:
            lms = self._json("/api/v0/models")
            if isinstance(lms, dict) and isinstance(lms.get("data"), list):
                raw.sources.append("/api/v0/models")
                raw.loaded = [{"name": m.get("id"), "state": m.get("state"),
                               "context_length": m.get("loaded_context_length", m.get("max_context_length"))}
                              for m in lms["data"] if isinstance(m, dict) and m.get("state") == "loaded"]
            raw.missing.append("/metrics (LM Studio has none)")
        elif kind == OPENAI:
            raw.missing += ["/metrics", "/props", "/api/ps"]
        return raw

    def sample(self) -> ServerStats:
        """The server's figures now; the token counts and rates are over the window since the previous
        sample (none on the first)."""
        raw = self.snapshot()
        prev, self._prev = self._prev, raw
        return stats_between(prev, raw, self.url)

    @property
    def has_metrics(self) -> bool:
        """Whether this kind of server has a /metrics to read (whether it answers is another matter)."""
        return self.probe() in (LLAMA_SERVER, VLLM, SGLANG)


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
        out.requests_running = s.get(L + "requests_processing")
        out.requests_waiting = s.get(L + "requests_deferred")
        kv = s.get(L + "kv_cache_usage_ratio")
        out.kv_use_pct = None if kv is None else 100 * kv
        out.prompt_tokens_total = s.get(L + "prompt_tokens_total")
        out.prompt_tokens_cached_total = s.get(L + "prompt_tokens_cached_total")
        out.prompt_tokens = d(L + "prompt_tokens_total")
        out.prompt_tokens_cached = d(L + "prompt_tokens_cached_total")
        out.prefill_tok_s = ratio(out.prompt_tokens, d(L + "prompt_seconds_total"))
        out.decode_tok_s = ratio(d(L + "tokens_predicted_total"), d(L + "tokens_predicted_seconds_total"))
        acc = d(L + "spec_decode_num_accepted_tokens_total")
        out.draft_acceptance_pct = _pct(acc, d(L + "spec_decode_num_draft_tokens_total"))
    elif raw.kind == VLLM:
        V = "vllm:"
        out.requests_running = s.get(V + "num_requests_running")
        out.requests_waiting = s.get(V + "num_requests_waiting")
        kv = _sum(s, V + "kv_cache_usage_perc") if V + "kv_cache_usage_perc" in s else s.get(
            V + "gpu_cache_usage_perc")
        out.kv_use_pct = None if kv is None else 100 * kv
        out.prompt_tokens_total = s.get(V + "prompt_tokens_total")
        out.prompt_tokens_cached_total = s.get(V + "prefix_cache_hits_total")
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
        out.requests_running = s.get(G + "num_running_reqs")
        out.requests_waiting = s.get(G + "num_queue_reqs")
        kv = s.get(G + "token_usage")
        out.kv_use_pct = None if kv is None else 100 * kv
        out.prompt_tokens_total = s.get(G + "prompt_tokens_total")
        out.prompt_tokens_cached_total = s.get(G + "cached_tokens_total")
        out.prompt_tokens_cached = d(G + "cached_tokens_total")
        prompt = d(G + "prompt_tokens_total")
        out.prompt_tokens = None if prompt is None else max(prompt - (out.prompt_tokens_cached or 0), 0.0)
        out.queue_time_mean_s = hist_mean(G + "queue_time_seconds")
    return out


DISAGREE_FRACTION = 0.2  # a reply whose client TTFT and server prompt time differ by more is marked


def client_vs_server(client_ttft_s: float | None, timings: dict[str, Any] | None,
                     stats: ServerStats | None = None) -> dict[str, Any] | None:
    """The client's TTFT beside the server's own prompt time for one reply: llama-server's response
    `timings.prompt_ms` (this reply's), else the mean prefill time of the window (vLLM's histogram). The
    difference is network plus queue; `disagree` marks a reply where they differ by more than 20% of the
    client's TTFT. None when either side is unknown."""
    server_s: float | None = None
    source = ""
    if timings and isinstance(timings.get("prompt_ms"), int | float):
        server_s, source = float(timings["prompt_ms"]) / 1000, "response timings"
    elif stats is not None and stats.prefill_time_mean_s is not None:
        server_s, source = stats.prefill_time_mean_s, f"{stats.kind} prefill histogram"
    if client_ttft_s is None or server_s is None or client_ttft_s <= 0:
        return None
    gap = client_ttft_s - server_s
    out: dict[str, Any] = {"client_ttft_ms": round(client_ttft_s * 1000, 1),
                           "server_prompt_ms": round(server_s * 1000, 1),
                           "network_and_queue_ms": round(gap * 1000, 1), "server_source": source,
                           "disagree": abs(gap) > DISAGREE_FRACTION * client_ttft_s}
    if timings and isinstance(timings.get("cache_n"), int | float):
        out["server_cached_tokens"] = int(timings["cache_n"])
    return out
