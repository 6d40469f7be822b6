"""The metrics panel's "server" block for a model behind a server: what the server itself says, sampled
in a thread once a second at most, each figure only when the server gives it, the kind named; figures of
the last prefill stay shown through idle seconds. The widget alone, in a bare app, against recorded
llama-server bodies replayed on loopback (quick tier: no model, no worker)."""

from __future__ import annotations

import json

from textual.app import App, ComposeResult

from localllm.backends.base import ModelInfo
from localllm.runtime.metrics import ReplyStats
from localllm.ui.widgets import metrics_panel
from localllm.ui.widgets.metrics_panel import MetricsPanel
from tests.metrics_server import MetricsServer, recorded
from tests.waits import wait_for


class PanelApp(App):
    def compose(self) -> ComposeResult:
        yield MetricsPanel()


def _remote(url: str) -> ModelInfo:
    return ModelInfo(name="qwen", path=url + "/v1", backend="remote", quant="server",
                     extra={"api_key_env": "LOCALLLM_TEST_NO_SUCH_KEY"})


def _as_llama_server(srv: MetricsServer) -> None:
    """Answer as llama-server does before any reply: /props, no busy slots, the first /metrics body."""
    srv.json("/props", json.dumps({"total_slots": 2, "default_generation_settings": {}}))
    srv.json("/slots", "[]")
    srv.metrics(recorded("llama_server_a.txt"))


async def test_the_server_block_shows_what_llama_server_says_and_keeps_the_last_prefill(monkeypatch) -> None:
    monkeypatch.setattr(metrics_panel, "SERVER_EVERY_S", 0.2)
    with MetricsServer() as srv:
        _as_llama_server(srv)
        app = PanelApp()
        async with app.run_test(size=(40, 60)) as pilot:
            panel = app.query_one(MetricsPanel)
            panel.watch_server(_remote(srv.url))
            await wait_for(pilot, lambda: panel.server is not None, timeout=30)
            assert panel.rows["server"] == "llama-server"
            assert panel.rows["server running"] == "1" and panel.rows["server waiting"] == "0"
            assert "server prefill" not in panel.rows  # no window yet
            srv.metrics(recorded("llama_server_b.txt"))  # a reply: 400 new prompt tokens, 500 reused
            await wait_for(pilot, lambda: "server prefill" in panel.rows, timeout=30)
            assert panel.rows["server cached"] == "500/900 tok"
            assert panel.rows["server prefill"] == "400.0 tok/s" and panel.rows["server decode"] == "50.0 tok/s"
            assert panel.rows["server draft acc"] == "80%" and "server KV use" not in panel.rows
            seen = len(srv.paths)
            await pilot.pause(0.8)  # idle: the counters stand still
            assert len(srv.paths) > seen  # still sampled
            assert panel.rows["server prefill"] == "400.0 tok/s" and panel.rows["server cached"] == "500/900 tok"
            assert "server · llama-server" in str(panel.render())
            panel.watch_server(ModelInfo(name="m", path="/m.gguf", backend="llama_cpp"))
            assert panel.server is None and "server" not in panel.rows
            # a sample already under way finishes (its answer is dropped): count from when it has
            await wait_for(pilot, lambda: not panel._server_busy, timeout=30)
            seen = len(srv.paths)
            await pilot.pause(0.5)
            assert len(srv.paths) == seen  # a local model: the server is no longer asked


async def test_a_server_without_metrics_is_named_with_what_it_lacks() -> None:
    with MetricsServer() as srv:  # answers 404 to every one of the probes
        app = PanelApp()
        async with app.run_test(size=(40, 60)) as pilot:
            panel = app.query_one(MetricsPanel)
            panel.watch_server(_remote(srv.url))
            await wait_for(pilot, lambda: panel.server is not None, timeout=30)
            assert panel.rows["server"] == "OpenAI-compatible"
            assert "/metrics" in panel.rows["server lacks"]
            assert not [k for k in panel.rows if k.startswith("server ") and k != "server lacks"]


def _reply(panel: MetricsPanel, ttft_s: float, timings: dict | None = None) -> None:
    """A reply as the ChatScreen feeds it: live snapshots while it streams, then the final stats."""
    panel.show_stats(ReplyStats(wall_s=0.1, ttft_s=None, live=True))
    panel.show_stats(ReplyStats(wall_s=ttft_s + 0.5, ttft_s=ttft_s, prompt_tokens=900, completion_tokens=8,
                                server_timings=timings, live=False))


async def test_after_a_reply_the_client_ttft_stands_beside_the_servers_prompt_time() -> None:
    """llama-server: its response's timings.prompt_ms is this reply's prompt time; the difference is
    network + queue, marked when the two differ by more than 20% of the client's TTFT."""
    with MetricsServer() as srv:
        _as_llama_server(srv)
        app = PanelApp()
        async with app.run_test(size=(40, 60)) as pilot:
            panel = app.query_one(MetricsPanel)
            panel.watch_server(_remote(srv.url))
            await wait_for(pilot, lambda: panel.server is not None, timeout=30)
            assert "network + queue" not in panel.rows  # no reply yet
            panel.show_stats(ReplyStats(live=True))
            assert "client TTFT" not in panel.rows  # while it streams: nothing to compare yet
            _reply(panel, 0.5, {"prompt_ms": 450.0, "cache_n": 500})
            assert panel.rows["client TTFT"] == "500 ms" and panel.rows["server prompt"] == "450 ms"
            assert panel.rows["network + queue"] == "50 ms"  # within 20%: not marked
            assert panel.vs_server["server_source"] == "response timings"
            await pilot.pause()
            text = str(panel.render())
            assert "network + queue" in text and "50 ms" in text and ">20%" not in text
            _reply(panel, 0.5, {"prompt_ms": 200.0})  # a queue in front of the server: 300 ms of 500
            assert panel.rows["network + queue"] == "300 ms >20%"
            assert ">20%" in str(panel.render())
            panel.show_stats(ReplyStats(live=True))
            assert "network + queue" not in panel.rows  # the next reply: the last one's gap goes


async def test_vllm_prompt_time_comes_from_its_prefill_histogram_over_the_reply(monkeypatch) -> None:
    """vLLM gives no timings in its responses: the mean of its prefill-time histogram over the window the
    reply's prefill fell in (500 ms in the recorded bodies) stands for the server's prompt time."""
    monkeypatch.setattr(metrics_panel, "SERVER_EVERY_S", 0.2)
    with MetricsServer() as srv:
        srv.metrics(recorded("vllm_a.txt"))
        app = PanelApp()
        async with app.run_test(size=(40, 60)) as pilot:
            panel = app.query_one(MetricsPanel)
            panel.watch_server(_remote(srv.url))
            await wait_for(pilot, lambda: panel.server is not None, timeout=30)
            assert panel.rows["server"] == "vLLM"
            panel.show_stats(ReplyStats(live=True))  # a reply begins; the server counts its prefill
            srv.metrics(recorded("vllm_b.txt"))
            await wait_for(pilot, lambda: panel._reply_prefill is not None, timeout=30)
            panel.show_stats(ReplyStats(wall_s=2.0, ttft_s=1.0, live=False))
            assert panel.rows["client TTFT"] == "1000 ms" and panel.rows["server prompt"] == "500 ms"
            assert panel.rows["network + queue"] == "500 ms >20%"
            assert panel.vs_server["server_source"] == "vLLM prefill histogram"
            await pilot.pause(0.5)  # idle samples (counters standing still) leave the comparison be
            assert panel.rows["server prompt"] == "500 ms"
