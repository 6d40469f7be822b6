"""The remote backend against llama-cpp-python's own OpenAI-compatible server serving the embedded
model, and against a loopback server of ours that misbehaves on purpose."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from localllm.chat.session import ChatSession, TextDelta
from localllm.config import LoadOptions, SamplingParams
from localllm.errors import LocalLLMError
from localllm.models.endpoints import api_base, discover, server_pid
from tests.hubserver import free_port
from tests.llama_server import llama_server as start_llama_server
from tests.openai_fault_server import MODEL, FaultServer, Handler
from tests.replies import collect, stop_at_first_piece

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier


@pytest.fixture(scope="module")
def llama_server(model_path):
    with start_llama_server(model_path, "--n_threads", "2", "--n_ctx", "2048", "--verbose", "False") as server:
        yield server


def test_chat_through_a_real_server_fills_the_panels(llama_server) -> None:
    url, proc = llama_server
    s = ChatSession(sampling=SamplingParams(max_tokens=24, seed=1))
    info = s.load(url, LoadOptions(), backend="remote")
    try:
        assert info.backend == "remote" and info.path == api_base(url)
        assert info.extra["models"] and info.name in info.extra["models"]
        assert info.extra["server_pid"] == proc.pid  # found by its port: its CPU and RSS are measured
        text, done = collect(s.send("Say hello."))
        st = done.stats
        assert text.strip() and done.turn.content == text
        assert 0 < st.completion_tokens <= 24 and st.decode_tok_s > 0 and 0 < st.ttft_s < st.wall_s
        assert st.cpu_total_s > 0 and st.rss_peak_mib > 50  # the server process, which runs the model
        assert st.client_cpu_s is not None and st.client_cpu_s < st.cpu_total_s
        assert st.prompt_tokens > 5  # the server's own usage count
    finally:
        s.close()


def test_cancel_closes_the_stream(llama_server) -> None:
    url, _ = llama_server
    s = ChatSession(sampling=SamplingParams(max_tokens=400, seed=1))
    s.load(url, LoadOptions(), backend="remote")
    try:
        done = stop_at_first_piece(s, "Write a long story about the sea.")
        assert done.turn.status == "stopped" and done.stats.completion_tokens < 400
        _, again = collect(s.send("Thanks"))  # the server and the session go on
        assert again.turn.status in ("ok", "length")
    finally:
        s.close()


def test_unknown_model_id_lists_what_the_server_has(llama_server) -> None:
    url, _ = llama_server
    with pytest.raises(LocalLLMError, match="has no model 'nope'; it has: "):
        ChatSession().load(url, LoadOptions(remote_model="nope"), backend="remote")


def test_cli_endpoint_json(llama_server) -> None:
    url, _ = llama_server
    out = subprocess.run([sys.executable, "-m", "localllm", "chat", "--endpoint", url, "-p", "Hi",
                          "--max-tokens", "8", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["model"]["backend"] == "remote" and record["reply"].strip()
    assert record["stats"]["client_cpu_s"] is not None


def test_server_pid_and_discovery_stay_on_loopback(llama_server) -> None:
    url, proc = llama_server
    port = int(url.rsplit(":", 1)[1])
    assert server_pid(url) == proc.pid
    assert server_pid("http://example.invalid:8080") is None  # never looked up off this machine
    found = discover({port: "llama-cpp-python"})
    assert [f.kind for f in found] == ["llama-cpp-python"] and found[0].models



def test_server_figures_of_llama_cpp_python_name_what_it_lacks(llama_server, capsys) -> None:
    """llama_cpp.server serves no /metrics, /props or /api/ps: its kind is told from that, the figures it
    lacks are named, and `chat --json` still carries a "server" object saying so."""
    from localllm.cli import main as cli
    from localllm.models.server_figures import OPENAI
    from localllm.models.server_stats import ServerStatsReader

    url, _ = llama_server
    stats = ServerStatsReader(url, key_env=None).sample()
    assert stats.kind == OPENAI and {"/metrics", "/props", "/api/ps"} <= set(stats.missing)
    assert stats.requests_running is None and stats.prefill_tok_s is None and stats.figures() == []
    assert cli.main(["chat", "-m", url, "-p", "Hi", "--max-tokens", "4", "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["server"]["kind"] == OPENAI and "/metrics" in record["server"]["missing"]


def test_chat_json_carries_the_server_figures_of_its_turn(capsys) -> None:
    """Against a server whose /metrics replays recorded llama-server bodies (before the turn, after it):
    the "server" object of `chat --json` holds the turn's deltas."""
    from localllm.cli import main as cli
    from tests.metrics_server import recorded
    from tests.sse_server import SseServer

    served: list[SseServer] = []

    def metrics() -> str:  # the counters grow once the turn's request has come
        return recorded("llama_server_b.txt" if served[0].bodies else "llama_server_a.txt")

    with SseServer(ttft_s=0.01, interval_s=0.001, metrics=metrics) as srv:
        served.append(srv)
        rc = cli.main(["chat", "-m", srv.url, "-p", "Hi", "--max-tokens", "4", "--json", "--quiet"])
    assert rc == 0
    server = json.loads(capsys.readouterr().out.splitlines()[-1])["server"]
    assert server["kind"] == "llama-server" and "/metrics" in server["sources"]
    assert server["prompt_tokens"] == 400 and server["prompt_tokens_cached"] == 500
    assert server["prefill_tok_s"] == 400 and server["decode_tok_s"] == 50
    assert server["requests_waiting"] == 3 and "kv_use_pct" not in server
    assert "ttft" not in server  # no timings in this server's replies: nothing to set beside the TTFT


@pytest.mark.parametrize("mode,message", [
    ("html", "not valid JSON"),
    ("404", "404"),
])
def test_not_an_openai_server(mode, message) -> None:
    with FaultServer(mode) as srv:
        with pytest.raises(LocalLLMError, match=message):
            ChatSession().load(srv.url, LoadOptions(), backend="remote")


def test_connection_refused() -> None:
    port = free_port()
    with pytest.raises(LocalLLMError, match="connection refused"):
        ChatSession().load(f"http://127.0.0.1:{port}", LoadOptions(), backend="remote")


def test_401_names_the_variable_and_never_the_key(monkeypatch) -> None:
    with FaultServer("401") as srv:
        monkeypatch.delenv("MY_KEY", raising=False)
        with pytest.raises(LocalLLMError, match=r"\$MY_KEY is not set") as err:
            ChatSession().load(srv.url, LoadOptions(api_key_env="MY_KEY"), backend="remote")
        monkeypatch.setenv("MY_KEY", "wrong-key-456")
        with pytest.raises(LocalLLMError, match="was refused") as err:
            ChatSession().load(srv.url, LoadOptions(api_key_env="MY_KEY"), backend="remote")
        assert "wrong-key-456" not in str(err.value)
        monkeypatch.setenv("MY_KEY", Handler.key)
        s = ChatSession()
        s.load(srv.url, LoadOptions(api_key_env="MY_KEY"), backend="remote")
        try:
            text, done = collect(s.send("hi"))
            assert text == "Hello there friend" and done.stats.cpu_total_s is not None
            log = s.log_path.read_text()
            assert Handler.key not in log
        finally:
            s.close()


@pytest.mark.parametrize("mode,message", [
    ("stall", "stopped answering"),
    ("malformed", "not valid JSON"),
    ("die", "broke"),
])
def test_faults_mid_reply_keep_the_partial_reply(mode, message) -> None:
    with FaultServer(mode) as srv:
        s = ChatSession(sampling=SamplingParams(max_tokens=20))
        s.load(srv.url, LoadOptions(read_timeout_s=1.0), backend="remote")
        try:
            got = ""
            with pytest.raises(LocalLLMError, match=message):
                for ev in s.send("hi"):
                    if isinstance(ev, TextDelta):
                        got += ev.text
            assert s.history[-1].role == "assistant" and s.history[-1].status == "error"
            assert s.history[-1].content.startswith("Hello")  # what arrived is kept, marked
            assert s.model.name == MODEL
        finally:
            s.close()




def test_a_timing_run_compares_the_local_model_with_the_same_model_behind_the_server(llama_server) -> None:
    from localllm.bench import export as bench_export
    from localllm.bench.plan import BenchConfig, BenchPlan
    from localllm.bench.runs import run_plan
    from localllm.models.endpoints import with_model

    url, proc = llama_server
    model_id = ChatSession().load(url, LoadOptions(), backend="remote").name
    plan = BenchPlan([BenchConfig("embedded", n_threads=1, label="local"),
                      BenchConfig(with_model(url, model_id), backend="remote", label="server")],
                     prompt_tokens=30, gen_tokens=16, reps=2, warmup=1)
    result = run_plan(plan)
    local, server = result.rows
    assert [local.status, server.status] == ["ok", "ok"], (local.reason, server.reason)
    for row in (local, server):
        assert row.columns["decode_tok_s"].mean > 0 and row.columns["ttft_ms"].mean > 0
        assert row.columns["decode_tok_s"].n == 2
    assert server.config["model"].endswith("#" + model_id)
    # the server is a process on this machine: its CPU time and RSS are measured by its pid
    assert server.columns["rss_peak_mib"].mean > 50 and server.columns["cpu_total_s"].mean > 0
    table = bench_export.parse_markdown(bench_export.to_markdown(result))
    assert [r["config"] for r in table] == ["local", "server"]
