"""A server's own figures: its kind found from what it answers, and recorded `/metrics` bodies of
llama-server and vLLM (tests/data/server_metrics, their real text formats: HELP/TYPE lines, counters,
gauges, histograms) replayed by a loopback server, with counters that reset, absent metrics and garbage
lines."""

from __future__ import annotations

import json

import pytest

from localllm.models.server_figures import (
    LLAMA_SERVER,
    LM_STUDIO,
    OLLAMA,
    OPENAI,
    SGLANG,
    VLLM,
    counter_delta,
    parse_metrics,
)
from localllm.models.server_stats import ServerStatsReader, server_root
from tests.hubserver import free_port
from tests.metrics_server import MetricsServer, recorded

PROPS = json.dumps({"default_generation_settings": {"n_ctx": 4096}, "total_slots": 4,
                    "model_path": "/m/qwen.gguf", "build_info": "b6500"})
SLOTS = json.dumps([{"id": 0, "is_processing": True}, {"id": 1, "is_processing": False}])


def test_parse_reads_counters_gauges_and_histograms_summing_label_sets() -> None:
    s = parse_metrics(recorded("vllm_a.txt"))
    assert s["vllm:num_requests_running"] == 2 and s["vllm:kv_cache_usage_perc"] == 0.25
    assert s["vllm:prompt_tokens_total"] == 5000 and s["vllm:num_preemptions_total"] == 1
    assert s["vllm:request_queue_time_seconds_sum"] == 2 and s["vllm:request_queue_time_seconds_count"] == 10
    assert s['vllm:request_queue_time_seconds_bucket{le="+Inf"}'] == 10
    two_engines = ('vllm:num_requests_running{engine="0",model_name="m"} 2\n'
                   'vllm:num_requests_running{engine="1",model_name="m"} 3\n')
    assert parse_metrics(two_engines)["vllm:num_requests_running"] == 5  # data parallel: summed
    llama = parse_metrics(recorded("llama_server_a.txt"))
    assert llama["llamacpp:prompt_tokens_total"] == 1200 and llama["llamacpp:n_busy_slots_per_decode"] == 1.5


def test_garbage_lines_cost_only_themselves() -> None:
    body = recorded("llama_server_a.txt").replace(
        "llamacpp:requests_deferred 0",
        "llamacpp:requests_deferred 0\nthis is not a metric line\nllamacpp:broken{le= 12\n<html>oops</html>")
    s = parse_metrics(body + "llamacpp:nan_gauge NaN\n")
    assert s["llamacpp:prompt_tokens_total"] == 1200 and s["llamacpp:requests_deferred"] == 0
    assert "llamacpp:nan_gauge" not in s and not any("broken" in k or "html" in k for k in s)
    assert parse_metrics("") == {} and parse_metrics("{\"json\": true}") == {}


def test_counter_delta_counts_a_reset_from_zero() -> None:
    assert counter_delta(100, 150) == 50 and counter_delta(100, 30) == 30
    assert counter_delta(None, 5) is None and counter_delta(5, None) is None


def test_server_root_accepts_the_usual_forms() -> None:
    assert server_root("127.0.0.1:8080/v1/#m") == "http://127.0.0.1:8080"
    assert server_root("https://h.example/v1") == "https://h.example"


def test_llama_server_with_metrics_gives_rates_from_deltas_and_survives_a_reset() -> None:
    with MetricsServer() as srv:
        srv.json("/props", PROPS)
        srv.json("/slots", SLOTS)
        srv.metrics(recorded("llama_server_a.txt"))
        reader = ServerStatsReader(srv.url + "/v1", key_env=None)
        first = reader.sample()
        assert first.kind == LLAMA_SERVER and reader.kind == LLAMA_SERVER
        assert first.sources == ["/metrics", "/props"] and not first.missing  # /slots: not with /metrics
        assert (first.requests_running, first.requests_waiting, first.slots) == (1, 0, 4)
        assert first.prompt_tokens_total == 1200 and first.prompt_tokens_cached_total == 300
        assert first.prefill_tok_s is None and first.prompt_tokens is None  # no window yet

        srv.metrics(recorded("llama_server_b.txt"))
        second = reader.sample()
        assert (second.requests_running, second.requests_waiting) == (2, 3)
        assert second.prompt_tokens == 400 and second.prompt_tokens_cached == 500
        assert second.prefill_tok_s == pytest.approx(400.0)  # 400 tokens over 1 s of prompt time
        assert second.decode_tok_s == pytest.approx(50.0)  # 100 tokens over 2 s
        assert second.draft_acceptance_pct == pytest.approx(80.0)
        assert second.kv_use_pct is None and second.preemptions is None  # llama-server gives neither
        d = second.to_dict()
        assert d["kind"] == "llama-server" and "kv_use_pct" not in d and "preemptions" not in d
        labels = dict(second.figures())
        assert labels["cached"] == "500/900 tok" and labels["prefill"] == "400.0 tok/s"

        srv.metrics(recorded("llama_server_reset.txt"))  # the server restarted
        third = reader.sample()
        assert third.prompt_tokens == 50 and third.prompt_tokens_cached == 10
        assert third.decode_tok_s == pytest.approx(40.0)  # 20 tokens over 0.5 s, from 0
        assert all(v is None or v >= 0 for v in (third.prefill_tok_s, third.prompt_tokens))


def test_llama_server_without_metrics_names_the_flag() -> None:
    with MetricsServer() as srv:
        srv.json("/props", PROPS)
        srv.routes["/metrics"] = (501, '{"error":{"message":"This server does not support metrics endpoint."}}',
                                  "application/json")
        stats = ServerStatsReader(srv.url, key_env=None).sample()
        assert stats.kind == LLAMA_SERVER and stats.slots == 4
        assert any("--metrics" in m for m in stats.missing) and any(m.startswith("/slots") for m in stats.missing)
        assert stats.prompt_tokens_total is None and stats.requests_running is None
        srv.json("/slots", SLOTS)  # --slots on: requests running counted from its slots
        s = ServerStatsReader(srv.url, key_env=None).sample()
        assert s.requests_running == 1 and "/slots" in s.sources and s.prompt_tokens_total is None
        assert ServerStatsReader(srv.url, key_env=None).sample().to_dict()["missing"]


def test_router_mode_asks_for_the_model() -> None:
    with MetricsServer() as srv:
        srv.json("/props", json.dumps({"role": "router"}))
        srv.metrics(recorded("llama_server_a.txt"))
        reader = ServerStatsReader(srv.url + "#qwen-8b", key_env=None)
        assert reader.sample().kind == LLAMA_SERVER
        assert "/metrics?model=qwen-8b" in srv.paths


def test_vllm_gives_kv_use_cache_hits_preemptions_and_histogram_means() -> None:
    with MetricsServer() as srv:
        srv.metrics(recorded("vllm_a.txt"))
        reader = ServerStatsReader(srv.url, key_env=None)
        first = reader.sample()
        assert first.kind == VLLM and first.sources == ["/metrics"]
        assert (first.requests_running, first.requests_waiting) == (2, 1) and first.kv_use_pct == 25
        srv.metrics(recorded("vllm_b.txt"))
        s = reader.sample()
        assert s.kv_use_pct == pytest.approx(81.25) and (s.requests_running, s.requests_waiting) == (4, 0)
        assert s.prompt_tokens_cached == 500 and s.prompt_tokens == 1500  # vLLM counts hits in prompt_tokens
        assert s.preemptions == 2
        assert s.queue_time_mean_s == pytest.approx(1.0)  # +3 s over +3 requests
        assert s.prefill_time_mean_s == pytest.approx(0.5)  # +1 s over +2 requests
        assert s.prefill_tok_s == pytest.approx(1500.0) and s.decode_tok_s == pytest.approx(250.0)
        assert s.draft_acceptance_pct == pytest.approx(75.0)  # +150 of +200


def test_vllm_with_absent_metrics_names_only_what_it_gives() -> None:
    body = "\n".join(line for line in recorded("vllm_a.txt").splitlines()
                     if "kv_cache" not in line and "spec_decode" not in line and "queue_time" not in line)
    with MetricsServer() as srv:
        srv.metrics(body)
        reader = ServerStatsReader(srv.url, key_env=None)
        reader.sample()
        s = reader.sample()
        assert s.kind == VLLM and s.kv_use_pct is None and s.draft_acceptance_pct is None
        assert s.queue_time_mean_s is None and s.requests_running == 2
        assert {k for k, _ in s.figures()} >= {"running", "waiting"} and "KV use" not in dict(s.figures())


def test_sglang_ollama_lm_studio_and_a_plain_server_are_told_apart() -> None:
    with MetricsServer() as srv:
        srv.metrics('# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs{model_name="m"} 3\n'
                    'sglang:num_queue_reqs{model_name="m"} 1\nsglang:token_usage{model_name="m"} 0.5\n')
        s = ServerStatsReader(srv.url, key_env=None).sample()
        assert (s.kind, s.requests_running, s.requests_waiting, s.kv_use_pct) == (SGLANG, 3, 1, 50)
    with MetricsServer() as srv:
        srv.json("/api/ps", json.dumps({"models": [{"name": "llama3.2:1b", "size": 2_000_000_000,
                                                    "size_vram": 1_073_741_824, "context_length": 4096,
                                                    "expires_at": "2026-12-06T22:00:00Z"}]}))
        s = ServerStatsReader(srv.url, key_env=None).sample()
        assert s.kind == OLLAMA and s.loaded[0]["size_vram"] == 1_073_741_824 and "/api/ps" in s.sources
        assert dict(s.figures())["loaded"] == "llama3.2:1b (1024 MiB VRAM)"
    with MetricsServer() as srv:
        srv.json("/api/v0/models", json.dumps({"object": "list", "data": [
            {"id": "qwen3-4b", "state": "loaded", "max_context_length": 32768},
            {"id": "other", "state": "not-loaded"}]}))
        s = ServerStatsReader(srv.url, key_env=None).sample()
        assert s.kind == LM_STUDIO and [m["name"] for m in s.loaded] == ["qwen3-4b"]
    with MetricsServer() as srv:  # answers nothing but 404
        s = ServerStatsReader(srv.url, key_env=None).sample()
        assert s.kind == OPENAI and "/metrics" in s.missing and s.to_dict()["kind"] == OPENAI


def test_a_server_that_is_gone_is_not_an_error() -> None:
    s = ServerStatsReader(f"http://127.0.0.1:{free_port()}", key_env=None, timeout=0.5).sample()
    assert s.kind == OPENAI and s.requests_running is None


def test_the_key_goes_only_with_a_named_variable(monkeypatch) -> None:
    monkeypatch.setenv("MY_KEY", "sekrit")
    with MetricsServer() as srv:
        srv.metrics(recorded("vllm_a.txt"))
        seen: list[str] = []
        from tests import metrics_server

        original = metrics_server._Handler.do_GET

        def spy(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            original(self)

        monkeypatch.setattr(metrics_server._Handler, "do_GET", spy)
        ServerStatsReader(srv.url, key_env="MY_KEY").sample()
        assert seen and all(h == "Bearer sekrit" for h in seen)
        seen.clear()
        ServerStatsReader(srv.url, key_env=None).sample()
        assert seen and not any(seen)


def test_client_ttft_beside_the_server_prompt_time() -> None:
    from localllm.models.server_figures import ServerStats
    from localllm.models.server_stats import client_vs_server

    near = client_vs_server(0.110, {"prompt_ms": 100.0, "cache_n": 42})
    assert near == {"client_ttft_ms": 110.0, "server_prompt_ms": 100.0, "network_and_queue_ms": 10.0,
                    "server_source": "response timings", "disagree": False, "server_cached_tokens": 42}
    far = client_vs_server(0.300, {"prompt_ms": 100.0})
    assert far is not None and far["disagree"] and far["network_and_queue_ms"] == 200.0
    vllm = ServerStats(kind="vLLM", url="", at=0.0, prefill_time_mean_s=0.05)
    from_histogram = client_vs_server(0.055, None, vllm)
    assert from_histogram is not None and from_histogram["server_source"] == "vLLM prefill histogram"
    assert not from_histogram["disagree"]
    assert client_vs_server(None, {"prompt_ms": 1}) is None and client_vs_server(0.1, {}) is None
