"""A load sweep against llama-cpp-python's OpenAI-compatible server serving the embedded model: it runs
one request at a time, so time to first token grows with concurrency; it runs on this machine, so its
CPU time and RSS are measured."""

from __future__ import annotations

import json
import sqlite3

import pytest

from localllm.bench.load import SweepPlan, markdown, run_sweep
from localllm.models.embedded import embedded_model_path
from tests.llama_server import llama_server as start_llama_server

pytestmark = pytest.mark.slow  # a real model server


@pytest.fixture(scope="module")
def llama_server():
    # interrupt_requests False: by default a new request cuts the running stream short; here the
    # others queue, as the sweep expects of a server that serves one request at a time
    with start_llama_server(str(embedded_model_path()), "--host", "127.0.0.1", "--n_ctx", "1024", "--n_threads", "2",
                            "--interrupt_requests", "False", "--verbose", "False", deadline_s=120) as server:
        yield server


def test_the_pinned_sweep_command_against_a_real_server(llama_server, tmp_path, monkeypatch, capsys) -> None:
    """`localllm bench -m URL --concurrency 1,2,4 --requests 8 --json`, with an SLO and --sqlite."""
    from localllm.cli import main as cli

    url, proc = llama_server
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    db = tmp_path / "runs.sqlite"
    rc = cli.main(["bench", "-m", url, "--concurrency", "1,2,4", "--requests", "8", "--tokens", "16", "--json",
                   "--slo", "e2e=600s", "--sqlite", str(db)])
    out = capsys.readouterr().out
    assert rc == 0, out[-2000:]
    data = json.loads(out)
    assert data["model"] and not data["cancelled"] and not data["stopped_reason"]
    levels = data["levels"]
    assert [lv["level"] for lv in levels] == [1, 2, 4]
    for lv in levels:
        assert (lv["completed"], lv["failed"]) == (8, 0), lv["errors"]
        assert all(0 < s["output_tokens"] <= 16 and s["ttft_s"] is not None for s in lv["samples"])
        assert len(lv["samples"]) == 8 and all(s["token_times_s"] for s in lv["samples"])
        for stat in ("ttft", "itl", "tpot", "e2e"):
            assert all(lv[stat][q] is not None for q in ("mean", "p50", "p90", "p99")), (stat, lv[stat])
        assert lv["output_tok_s"] > 0 and lv["req_s"] > 0 and lv["goodput_fraction"] == 1.0
        assert lv["server_cpu_s"] > 0  # the server's own process, measured here
        assert lv["server_rss_peak_bytes"] > 50 * 2**20
        # llama_cpp.server ignores ignore_eos but takes min_tokens: every reply is as long as asked
        assert lv["mean_output_tokens"] == 16, [s["output_tokens"] for s in lv["samples"]]
        # it serves no /metrics: the kind is told, what it lacks named, no counter invented
        assert lv["server"]["kind"] == "OpenAI-compatible" and "/metrics" in lv["server"]["missing"]
        assert "prompt_tokens_reused" not in lv["server"]
    assert levels[2]["ttft"]["p50"] > levels[0]["ttft"]["p50"]  # requests queue behind each other
    assert data["knee"] == 4  # a loose SLO: every level meets it
    rows = sqlite3.connect(db).execute("select level, completed, meets_slo from localllm_bench order by level").fetchall()
    assert rows == [(1, 8, 1), (2, 8, 1), (4, 8, 1)]
    assert proc.poll() is None


def test_sweep_markdown_names_the_server_columns(llama_server) -> None:
    url, _ = llama_server
    result = run_sweep(SweepPlan(url, [1, 2], requests=2, gen_tokens=8))
    table = markdown(result)
    assert "Server CPU s" in table and "| 2 | 2/0 |" in table
