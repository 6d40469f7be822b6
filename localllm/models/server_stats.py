"""What a model server says about itself: its kind, found from what it answers, and a typed snapshot of
its own figures (requests running and waiting, KV use, prompt tokens and those reused from its cache,
its prefill and decode rates, draft acceptance, preemptions), each only when the server gives it.

This module asks the server (`/metrics`, llama-server's `/props` and `/slots`, Ollama's `/api/ps`, LM
Studio's `/api/v0/models`); models.server_figures turns what it answered into figures, and holds the
metric names of each kind, checked against each project's source.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from localllm.models.endpoints import DEFAULT_KEY_ENV, api_base, split_model
from localllm.models.server_figures import (
    LLAMA_SERVER,
    LM_STUDIO,
    OLLAMA,
    OPENAI,
    SGLANG,
    VLLM,
    ServerStats,
    Snapshot,
    parse_metrics,
    stats_between,
)

PROBE_TIMEOUT_S = 2.0
MAX_BODY = 4 * 2**20  # a /metrics body is a few KiB; more is not read


def server_root(url: str) -> str:
    """http://host:port of a URL given as .../v1, ...#model or bare."""
    base = api_base(url)
    return base[: -len("/v1")]


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
