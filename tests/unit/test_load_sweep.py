"""Load sweeps against a deterministic loopback server: known TTFT and token gaps come back as measured
percentiles; goodput, the knee, failures, a dying server and cancel are reported as they happened."""

from __future__ import annotations

import json
import threading
import time

import pytest

from localllm.bench.errors import BenchError
from localllm.bench.load import (
    LevelResult,
    RequestSample,
    Slo,
    Stat,
    SweepPlan,
    SweepResult,
    markdown,
    run_sweep,
)
from localllm.errors import LocalLLMError
from tests.hubserver import free_port
from tests.sse_server import MODEL, SseServer

TTFT, GAP = 0.20, 0.02


def test_slo_parse_accepts_the_documented_form() -> None:
    assert Slo.parse("ttft=500ms,tpot=50ms") == Slo(ttft_s=0.5, tpot_s=0.05)
    assert Slo.parse(" TTFT = 0.5s , e2e=2s, tpot=40 ") == Slo(ttft_s=0.5, tpot_s=0.04, e2e_s=2.0)
    assert Slo.parse("") == Slo() and not Slo().is_set
    assert Slo.parse("ttft=500ms").describe() == "TTFT ≤ 500 ms"


@pytest.mark.parametrize("text", ["junk", "ttft=fast", "ttft=5min", "latency=2s", "ttft=1s,ttft=2s",
                                  "ttft=0ms", ",", "ttft=-1s"])
def test_slo_parse_rejects_junk_and_says_the_form(text) -> None:
    with pytest.raises(BenchError, match="ttft=500ms,tpot=50ms,e2e=2s") as err:
        Slo.parse(text)
    assert isinstance(err.value, LocalLLMError)


def test_slo_met_by_checks_only_the_set_targets() -> None:
    fast = RequestSample(1, 0, 0.0, 0.1, 0.5, 5, 10, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert fast.itl == pytest.approx([0.1] * 4) and fast.tpot_s == pytest.approx(0.1)
    assert Slo().met_by(fast) and Slo(ttft_s=0.2, tpot_s=0.2, e2e_s=1).met_by(fast)
    assert not Slo(ttft_s=0.05).met_by(fast) and not Slo(tpot_s=0.05).met_by(fast)
    assert not Slo(e2e_s=0.4).met_by(fast)
    failed = RequestSample(1, 1, 0.0, 0.1, None, 1, None, [0.1], error="HTTP 503")
    assert not Slo().met_by(failed) and failed.tpot_s is None


def test_stat_percentiles_interpolate() -> None:
    s = Stat.of([4.0, 1.0, 3.0, 2.0, None])
    assert (s.n, s.mean, s.p50, s.p90) == (4, 2.5, 2.5, pytest.approx(3.7))
    assert Stat.of([]) == Stat()


@pytest.mark.parametrize("changes,message", [
    ({"levels": []}, "at least one concurrency level"),
    ({"levels": [1, 0]}, "from 1 to"),
    ({"requests": 0}, "at least 1"),
    ({"duration_s": 5.0}, "not both"),
    ({"requests": None}, "neither"),
    ({"requests": None, "duration_s": 0.0}, "above zero"),
    ({"gen_tokens": 0}, "at least 1 token"),
    ({"url": ""}, "URL"),
])
def test_plan_validate(changes, message) -> None:
    plan = SweepPlan(**{"url": "http://127.0.0.1:1", "levels": [1, 2], **changes})
    with pytest.raises(BenchError, match=message):
        plan.validate()


def _check_level(lr: LevelResult, gen: int) -> None:
    assert (lr.completed, lr.failed, lr.errors) == (4, 0, [])
    assert lr.ttft.p50 == pytest.approx(TTFT, rel=0.1)
    assert lr.itl.p50 == pytest.approx(GAP, rel=0.1)
    assert lr.tpot.p50 == pytest.approx(GAP, rel=0.1)
    assert all(s.output_tokens == gen and s.prompt_tokens == 25 and len(s.token_times_s) == gen
               for s in lr.samples)
    assert lr.req_s == pytest.approx(lr.completed / lr.duration_s)
    assert lr.output_tok_s == pytest.approx(lr.req_s * gen)
    assert lr.total_tok_s == pytest.approx(lr.req_s * (gen + 25))
    assert lr.goodput_fraction == 1.0 and lr.meets_slo  # no SLO: every completed request counts
    assert lr.server_cpu_s is None  # the server runs in this very process: not measured as a server


def test_known_timings_are_measured_at_concurrency_1_and_2() -> None:
    gen = 10
    lines: list[str] = []
    with SseServer(ttft_s=TTFT, interval_s=GAP) as srv:
        result = run_sweep(SweepPlan(srv.url, [1, 2], requests=4, gen_tokens=gen), progress=lines.append)
    assert result.model == MODEL and not result.cancelled and not result.stopped_reason
    assert [lr.level for lr in result.levels] == [1, 2] and result.knee == 2
    for lr in result.levels:
        _check_level(lr, gen)
    one, two = result.levels
    assert one.req_s == pytest.approx(1 / one.e2e.mean, rel=0.25)  # one at a time
    assert two.req_s == pytest.approx(2 / two.e2e.mean, rel=0.25)  # two at once, on a parallel server
    assert two.ttft.p50 == pytest.approx(one.ttft.p50, rel=0.1)
    assert "concurrency 2: 4/4 requests done" in lines

    assert len(srv.bodies) == 8
    body = srv.bodies[0]
    assert body["stream"] and body["stream_options"] == {"include_usage": True} and body["ignore_eos"]
    assert body["max_tokens"] == gen and body["temperature"] == 0 and body["model"] == MODEL
    prompts = [b["messages"][0]["content"] for b in srv.bodies]
    assert len(set(prompts)) == 4  # the index is in each level's prompts: no free prompt-cache hits

    record = json.loads(json.dumps(result.to_dict()))
    assert [len(lv["samples"]) for lv in record["levels"]] == [4, 4]
    assert record["levels"][0]["samples"][0]["token_times_s"] and record["levels"][0]["ttft"]["p50"]
    assert record["plan"]["levels"] == [1, 2] and record["knee"] == 2

    table = markdown(result)
    assert "| 1 | 4/0 |" in table and "| 2 | 4/0 |" in table and "Knee: concurrency 2" in table


def test_a_serialising_server_puts_the_knee_at_1() -> None:
    # one stream at a time: at concurrency 2 a request waits for the other (~0.15 + 7 x 0.02 s)
    with SseServer(ttft_s=0.15, interval_s=GAP, serial=True) as srv:
        result = run_sweep(SweepPlan(srv.url, [1, 2], requests=4, gen_tokens=8, slo=Slo.parse("ttft=300ms")))
    one, two = result.levels
    assert two.ttft.p90 > 0.35 and two.ttft.p90 > one.ttft.p90 + 0.15
    assert one.meets_slo and one.goodput_fraction == 1.0
    assert not two.meets_slo and two.goodput_fraction < 0.9 and two.failed == 0
    assert two.goodput_req_s == pytest.approx(two.goodput_fraction * two.req_s)
    assert result.knee == 1
    assert "Knee: concurrency 1" in markdown(result) and "TTFT ≤ 300 ms" in markdown(result)


def test_http_503_is_a_failed_request_with_its_reason() -> None:
    with SseServer(ttft_s=0.01, interval_s=0.005, fail_every=3) as srv:
        result = run_sweep(SweepPlan(srv.url, [1], requests=6, gen_tokens=4))
    (lr,) = result.levels
    assert (lr.completed, lr.failed, lr.errors) == (4, 2, ["2x HTTP 503"])
    assert [s.error for s in lr.samples] == ["", "", "HTTP 503", "", "", "HTTP 503"]
    assert not lr.meets_slo and result.knee is None and not result.stopped_reason
    assert "2x HTTP 503" in markdown(result) and "no level met the SLO" in markdown(result)


def test_a_server_that_dies_mid_sweep_keeps_the_levels_before() -> None:
    with SseServer(ttft_s=0.01, interval_s=0.005, die_after=4) as srv:
        result = run_sweep(SweepPlan(srv.url, [1, 2, 4], requests=4, gen_tokens=3))
    assert result.stopped_reason.startswith("the server stopped answering at level 2: ")
    assert [lr.level for lr in result.levels] == [1, 2]  # level 4 never ran
    first, second = result.levels
    assert (first.completed, first.failed) == (4, 0) and first.meets_slo
    assert second.completed == 0 and second.failed >= 2
    assert all("connection" in s.error for s in second.samples)
    assert result.knee == 1 and "Stopped early: the server stopped answering at level 2" in markdown(result)


def test_an_unreachable_server_is_a_bench_error() -> None:
    with pytest.raises(BenchError, match="connection refused"):
        run_sweep(SweepPlan(f"http://127.0.0.1:{free_port()}", [1], requests=1))
    with SseServer() as srv, pytest.raises(BenchError, match="no model 'nope'; it has: load-model"):
        run_sweep(SweepPlan(srv.url + "#nope", [1], requests=1))


def test_cancel_closes_the_streams_and_returns_what_ran() -> None:
    cancel = threading.Event()
    cancelled_at: list[float] = []
    # each request would stream for 0.05 s x 200 = 10 s
    with SseServer(ttft_s=0.01, interval_s=0.05) as srv:
        def cancel_after_tokens() -> None:
            srv.wait(lambda: srv.tokens_sent >= 3)
            cancelled_at.append(time.perf_counter())
            cancel.set()

        helper = threading.Thread(target=cancel_after_tokens, daemon=True)
        helper.start()
        result = run_sweep(SweepPlan(srv.url, [2, 4], requests=4, gen_tokens=200), cancel=cancel)
        returned = time.perf_counter()
        srv.wait(lambda: srv.aborted >= 1)  # the server saw its stream closed
    assert result.cancelled and [lr.level for lr in result.levels] == [2]
    assert returned - cancelled_at[0] < 4.0  # not the 10 s the streams would have taken
    (lr,) = result.levels
    assert lr.completed == 0 and lr.failed == len(lr.samples) >= 1 and lr.errors[0].endswith("x cancelled")
    assert any(s.token_times_s for s in lr.samples)  # what arrived before the cancel is kept
    assert result.knee is None and "Cancelled" in markdown(result)
    assert json.loads(json.dumps(result.to_dict()))["cancelled"] is True


def test_duration_mode_chunk_counts_and_server_timings() -> None:
    timings = {"prompt_per_second": 100.0, "predicted_per_second": 50.0, "predicted_n": 3}
    with SseServer(ttft_s=0.01, interval_s=0.01, usage=False, timings=timings) as srv:
        result = run_sweep(SweepPlan(srv.url, [2], requests=None, duration_s=0.3, gen_tokens=3))
    (lr,) = result.levels
    assert lr.completed >= 2 and lr.failed == 0
    assert all(s.start_s < 0.3 + 0.05 for s in lr.samples)  # none started after the level's time
    assert all(s.output_tokens == 3 and s.prompt_tokens is None for s in lr.samples)  # chunks counted
    assert lr.total_tok_s == pytest.approx(lr.output_tok_s)
    assert lr.server_timings == timings
    assert "0.3 s per level" in markdown(result)


def test_markdown_shows_server_columns_when_known() -> None:
    lr = LevelResult(level=1, completed=1, failed=0, errors=[], duration_s=1.0, req_s=1.0, output_tok_s=10,
                     total_tok_s=20, ttft=Stat.of([0.1]), itl=Stat.of([0.01]), tpot=Stat.of([0.01]),
                     e2e=Stat.of([0.2]), goodput_req_s=1.0, goodput_fraction=1.0, meets_slo=True,
                     server_cpu_s=1.5, server_rss_peak_bytes=300 * 2**20, server_timings=None, samples=[])
    result = SweepResult(SweepPlan("http://127.0.0.1:9", [1]), [lr], 1, False, "", "m")
    table = markdown(result)
    assert "Server CPU s" in table and "| 1.5 | 300 |" in table


@pytest.mark.parametrize("honours", [True, False])
def test_min_tokens_is_sent_and_the_mean_tokens_received_reported(honours) -> None:
    """A model that meets its end-of-sequence token after 5 tokens: a server that takes min_tokens gives
    the 10 asked for; one that ignores it gives 5, and the level says so (tok/req) instead of the header's 10."""
    with SseServer(ttft_s=0.01, interval_s=0.002, eos_after=5, min_tokens=honours) as srv:
        result = run_sweep(SweepPlan(srv.url, [1], requests=2, gen_tokens=10))
    assert all(b["min_tokens"] == 10 and b["max_tokens"] == 10 and b["ignore_eos"] for b in srv.bodies)
    (lr,) = result.levels
    assert lr.mean_output_tokens == (10 if honours else 5)
    assert result.to_dict()["levels"][0]["mean_output_tokens"] == lr.mean_output_tokens
    table = markdown(result)
    assert "| tok/req |" in table and f"| {lr.mean_output_tokens:.1f} |" in table


def test_the_level_clock_starts_when_its_first_request_goes_out(monkeypatch) -> None:
    """Making the workers' clients takes time (here 0.3 s each, on purpose): none of it is in the level's
    duration, so req/s and tok/s are not read low."""
    from localllm.bench import load_client

    made = load_client.openai_client

    def slow_client(*args, **kwargs):
        time.sleep(0.3)
        return made(*args, **kwargs)

    monkeypatch.setattr(load_client, "openai_client", slow_client)
    with SseServer(ttft_s=0.05, interval_s=0.005) as srv:
        result = run_sweep(SweepPlan(srv.url, [1], requests=3, gen_tokens=4))
    (lr,) = result.levels
    assert lr.samples[0].start_s == 0.0
    busy = sum(s.e2e_s for s in lr.samples)  # one at a time: the level is its requests, back to back
    assert busy <= lr.duration_s < busy + 0.15
    assert lr.req_s == pytest.approx(3 / lr.duration_s)


def test_a_sweep_records_the_server_counters_of_each_level() -> None:
    """The server's /metrics replays recorded vLLM bodies: before the level's first request, then after.
    The level carries what the server counted: prompt tokens reused, KV use at its peak, preemptions,
    mean queue and prefill time (histograms); JSON and Markdown both."""
    from tests.metrics_server import recorded

    served: list[SseServer] = []

    def metrics() -> str:
        return recorded("vllm_b.txt" if served[0].bodies else "vllm_a.txt")

    with SseServer(ttft_s=0.01, interval_s=0.002, metrics=metrics) as srv:
        served.append(srv)
        result = run_sweep(SweepPlan(srv.url, [2], requests=2, gen_tokens=4))
    (lr,) = result.levels
    server = lr.server
    assert server is not None and server["kind"] == "vLLM"
    assert server["prompt_tokens_reused"] == 500 and server["prompt_tokens"] == 1500
    assert server["kv_use_peak_pct"] == 81.25 and server["requests_waiting_peak"] == 1
    assert server["preemptions"] == 2
    assert server["queue_time_mean_ms"] == pytest.approx(1000) and server["prefill_time_mean_ms"] == pytest.approx(500)
    record = json.loads(json.dumps(result.to_dict()))
    assert record["levels"][0]["server"]["prompt_tokens_reused"] == 500
    table = markdown(result)
    assert "Reused prompt tok" in table and "KV peak %" in table and "Server queue ms" in table
    assert "| 500 | 81 | 1 | 2 | 1000.0 | 500.0 |" in table and "Server: vLLM" in table


def test_the_sqlite_rows_of_a_sweep_carry_the_server_columns(tmp_path) -> None:
    import sqlite3

    from localllm.bench.history import append_sweep
    from tests.metrics_server import recorded

    served: list[SseServer] = []

    def metrics() -> str:
        return recorded("vllm_b.txt" if served[0].bodies else "vllm_a.txt")

    with SseServer(ttft_s=0.01, interval_s=0.002, metrics=metrics) as srv:
        served.append(srv)
        result = run_sweep(SweepPlan(srv.url, [1], requests=1, gen_tokens=3))
    db = tmp_path / "runs.sqlite"
    assert append_sweep(db, result.to_dict(), "r1") == 1
    row = sqlite3.connect(db).execute(
        "select mean_output_tokens, server_kind, server_prompt_tokens_reused, server_kv_use_peak_pct, "
        "server_preemptions, server_queue_time_mean_ms from localllm_bench").fetchone()
    assert row == (3.0, "vLLM", 500, 81.25, 2, 1000.0)


def test_a_server_without_metrics_adds_no_columns_but_names_what_it_lacks() -> None:
    with SseServer(ttft_s=0.01, interval_s=0.002) as srv:
        result = run_sweep(SweepPlan(srv.url, [1], requests=1, gen_tokens=2))
    (lr,) = result.levels
    assert lr.server is not None and lr.server["kind"] == "OpenAI-compatible" and "/metrics" in lr.server["missing"]
    table = markdown(result)
    assert "Reused prompt tok" not in table and "no /api/ps, /metrics, /props" in table
