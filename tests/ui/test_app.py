"""The real TUI, driven by a pilot, chatting with the real embedded model in a worker process."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from localllm.config import LoadOptions, SamplingParams
from localllm.ui.app import LocalLLMApp
from localllm.ui.widgets.chat_log import AssistantMessage, ErrorMessage, UserMessage
from localllm.ui.widgets.metrics_panel import MetricsPanel, sparkline
from localllm.ui.widgets.status_bar import StatusBar
from tests.waits import wait_for

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier

SIZE = (100, 32)


async def send(pilot, app, text: str) -> None:
    prompt = app.query_one("#prompt", Input)
    prompt.value = text
    prompt.focus()
    await pilot.press("enter")


def panel_rows(app) -> dict[str, str]:
    return app.query_one(MetricsPanel).rows


async def test_chat_streams_a_reply_and_the_panels_show_its_cost() -> None:
    app = LocalLLMApp(sampling=SamplingParams(max_tokens=300, ignore_eos=True, seed=4),
                      load_options=LoadOptions(context=1024))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        status = str(app.query_one(StatusBar).render())
        assert "Q4_1" in status and "ctx 1024" in status and "llama_cpp" in status
        await send(pilot, app, "Tell me about lighthouses.")
        await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating, timeout=400)
        reply = app.query(AssistantMessage).last()
        assert reply.deltas >= 2  # streamed in pieces, not painted once at the end
        assert reply.text and reply.text == app.session.history[-1].content
        assert "300 tok" in str(reply.stats.render()) and "decode" in str(reply.stats.render())
        assert app.query(UserMessage).last().content == "Tell me about lighthouses."
        stats = app.session.history[-1].stats
        assert stats.completion_tokens == 300 and stats.decode_tok_s > 0
        assert stats.cpu_total_s > 0 and stats.wall_s > 0 and stats.rss_peak_mib > 50
        table = panel_rows(app)
        assert table["wall"] != "-" and table["CPU user"] != "-" and table["TTFT"] != "-"
        assert float(table["decode"].split()[0]) > 0
        assert "MiB" in table["RSS now"]
        assert app.query_one(MetricsPanel).rss_history
        assert app.query_one(MetricsPanel).rate_history  # the meter's snapshots reached it while streaming
        from localllm.machine import gpu

        # no NVIDIA driver: nothing shown rather than zeros; with one, the worker's own VRAM
        assert ("VRAM" in table) == (gpu.unavailable_reason() is None)
        rendered = str(app.query_one(MetricsPanel).render())
        assert "CPU/wall" in rendered and "memory (RSS)" in rendered
        # the estimator's figure for this reply's context fill sits beside the measured peak, with its error
        await wait_for(pilot, lambda: "RSS estimate" in panel_rows(app) and not any(
            w.group == "estimate" and w.is_running for w in app.workers))
        panel = app.query_one(MetricsPanel)
        table, peak, estimate_mib = panel_rows(app), panel.rss[1], panel.estimate_mib  # one moment: no await
        estimate, error = table["RSS estimate"].split(" MiB ")
        assert abs(float(estimate) - peak) / peak < 0.10 and error.endswith("%")  # the F2 target
        # the error is the unrounded estimate's (from the shown, rounded MiB it could differ by 1: CI saw
        # -3% against a shown -2%)
        assert estimate_mib is not None and abs(float(estimate) - estimate_mib) <= 0.5
        assert f"{100 * (estimate_mib - peak) / peak:+.0f}%" == error
        # and the pair is kept, so later estimates learn from this machine
        from localllm.machine.calibration import load_measurements

        runs = load_measurements()
        run = [r for r in runs if r.get("measured_ram_bytes")][-1]
        assert run["format"] == "gguf" and run["quant"] == "Q4_1" and run["context"] == 1024
        assert run["measured_ram_bytes"] == int(stats.rss_peak_mib * 2**20) and run["predicted_ram_bytes"] > 0
        from localllm.machine.bandwidth import cached_bandwidth

        if cached_bandwidth():  # the speed model needs this machine's bandwidth: then the decode is kept too
            speed = [r for r in runs if r.get("measured_tok_s")][-1]
            assert speed["measured_tok_s"] == stats.decode_tok_s and speed["predicted_tok_s"] > 0
        # F7: the decode against its memory-bandwidth roofline, where this machine's bandwidth is known
        assert ("BW limit" in table) == (cached_bandwidth() is not None)
        if stats.limit_tok_s:
            assert table["BW limit"] == f"{stats.percent_of_limit:.0f}% of {stats.limit_tok_s:.0f} tok/s"


async def test_escape_stops_a_long_reply_and_history_stays_consistent() -> None:
    app = LocalLLMApp(sampling=SamplingParams(max_tokens=2000, ignore_eos=True, seed=1),
                      load_options=LoadOptions(context=4096))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        await pilot.press("escape")  # nothing generating: harmless
        assert not app.generating and app.session.history == []
        await send(pilot, app, "Write an endless story.")
        await wait_for(pilot, lambda: app.chat.reply is not None and app.chat.reply.text, timeout=180)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.generating, timeout=180)
        history = app.session.history
        assert [t.role for t in history] == ["user", "assistant"]
        assert history[-1].status == "stopped" and history[-1].stats.completion_tokens < 2000
        assert "stopped" in str(app.query(AssistantMessage).last().stats.render())
        # the conversation continues after a stop
        app.session.sampling = SamplingParams(max_tokens=8, ignore_eos=True)
        await send(pilot, app, "Thanks!")
        await wait_for(pilot, lambda: len(app.session.history) == 4 and not app.generating)
        assert app.session.history[-1].stats.completion_tokens == 8


async def test_empty_prompt_is_ignored_and_regenerate_replaces_the_reply() -> None:
    app = LocalLLMApp(sampling=SamplingParams(max_tokens=6, ignore_eos=True, seed=1),
                      load_options=LoadOptions(context=512))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        await send(pilot, app, "   ")
        await send(pilot, app, "Hi")
        await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating)
        # the app handles submits in order: a message made of the blank one would be here before "Hi"
        assert [m.content for m in app.query(UserMessage)] == ["Hi"]
        assert [t.content for t in app.session.history if t.role == "user"] == ["Hi"]
        first = app.session.history[-1]
        await pilot.press("ctrl+r")
        # a new reply replaced the first one (a Ctrl+R that did nothing would time out here)
        await wait_for(pilot, lambda: app.session.history[-1] is not first
                       and app.session.history[-1].stats is not None and not app.generating)
        assert len(app.session.history) == 2 and len(app.query(AssistantMessage)) == 1
        assert app.session.history[-1].stats.completion_tokens == 6


async def test_bad_model_file_is_an_error_message_and_the_app_stays_up(tmp_path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00")
    app = LocalLLMApp(model_path=str(bad))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: bool(app.query(ErrorMessage)))
        error = str(app.query(ErrorMessage).last().render())
        assert "broken.gguf" in error and "truncated" in error
        assert app.query_one("#prompt", Input).disabled
        assert "no model" in str(app.query_one(StatusBar).render())
        # the user can still load the embedded model from the same app
        await pilot.press("ctrl+o")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.model is not None)
        assert not app.query_one("#prompt", Input).disabled


def test_sparkline_scales_from_the_floor() -> None:
    assert sparkline([], 10) == ""
    assert sparkline([0, 50, 100], 10, floor=0) == "▁▅█"
    assert sparkline([200, 202], 10, floor=0) == "██"  # memory from zero: no fake doubling
    assert len(sparkline(list(range(100)), 20)) == 20


async def test_panel_fits_at_80x24() -> None:
    app = LocalLLMApp(load_options=LoadOptions(context=512))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        panel = app.query_one(MetricsPanel)
        assert panel.region.width == 30 and panel.region.height > 10
        assert app.query_one("#prompt", Input).region.height >= 1


async def test_every_binding_is_shown_in_the_footer_at_80_and_at_200_columns() -> None:
    from textual.widgets._footer import FooterKey

    for width in (80, 200):
        app = LocalLLMApp(load_options=LoadOptions(context=512))
        async with app.run_test(size=(width, 24)) as pilot:
            def laid_out(app=app) -> bool:  # every binding has its key, and every key its place
                keys = app.screen.query(FooterKey)
                return ({b.key for b in app.BINDINGS} <= {k.key for k in keys}
                        and all(k.region.width > 0 for k in keys))

            await wait_for(pilot, laid_out, 30)
            keys = list(app.screen.query(FooterKey))
            shown = {k.key for k in keys}
            assert {b.key for b in app.BINDINGS} <= shown, width
            boxes = [k.region for k in keys]
            assert all(0 <= r.x and r.right <= width and r.width > 0 for r in boxes), (width, boxes)
            assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), width
            prompt = app.query_one("#prompt", Input).region
            assert not any(prompt.overlaps(r) for r in boxes)



async def test_footer_rewraps_when_the_terminal_is_resized() -> None:
    """A resize across the one-row width recomposes the footer, and awaits its recompose() (a coroutine:
    called without await it never ran, and Python warned "coroutine ... was never awaited")."""
    import gc
    import warnings

    from localllm.ui.widgets.wrapping_footer import WrappingFooter

    app = LocalLLMApp(load_options=LoadOptions(context=512))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with app.run_test(size=(200, 24)) as pilot:
            footer = app.screen.query_one(WrappingFooter)
            await wait_for(pilot, lambda: not footer.has_class("-two-rows"), 30)
            await pilot.resize_terminal(80, 24)
            await wait_for(pilot, lambda: app.screen.query_one(WrappingFooter).has_class("-two-rows"), 30)
            await pilot.resize_terminal(200, 24)
            await wait_for(pilot, lambda: not app.screen.query_one(WrappingFooter).has_class("-two-rows"), 30)
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]

async def test_worker_log_screen_shows_llama_cpp_output() -> None:
    from textual.widgets import Log

    from localllm.ui.screens.log_screen import LogScreen

    app = LocalLLMApp(load_options=LoadOptions(context=512))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, LogScreen))
        lines = "\n".join(app.screen.query_one(Log).lines)
        assert "Using chat eos_token" in lines  # llama.cpp and llama-cpp-python wrote here
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, LogScreen))


def test_vram_rows_appear_only_with_a_gpu() -> None:
    from localllm.runtime.metrics import ReplyStats
    from localllm.ui.widgets.metrics_panel import stats_rows

    assert "VRAM" not in dict(stats_rows(ReplyStats()))
    rows = dict(stats_rows(ReplyStats(vram_now_mib=512.0, vram_peak_mib=2048.0)))
    assert rows["VRAM"] == "512 MiB" and rows["VRAM peak"] == "2.00 GiB" and "GPU util" not in rows
    rows = dict(stats_rows(ReplyStats(vram_now_mib=512.0, vram_peak_mib=2048.0, gpu_util_pct=87.4)))
    assert rows["GPU util"] == "87%"
    from localllm.chat.report import full_report, stats_line

    assert "GPU 87% busy" in stats_line(ReplyStats(vram_peak_mib=2048.0, gpu_util_pct=87.4))
    assert "GPU utilization 87% (mean)" in full_report(ReplyStats(vram_peak_mib=2048.0, gpu_util_pct=87.4))


def test_the_bandwidth_limit_row_appears_only_with_a_known_limit() -> None:
    from localllm.runtime.metrics import ReplyStats
    from localllm.ui.widgets.metrics_panel import stats_rows

    assert "BW limit" not in dict(stats_rows(ReplyStats(decode_tok_s=50.0)))
    assert "BW limit" not in dict(stats_rows(ReplyStats(limit_tok_s=200.0)))  # no decode yet
    rows = stats_rows(ReplyStats(decode_tok_s=50.0, limit_tok_s=200.0))
    assert rows[0] == ("BW limit", "25% of 200 tok/s")


async def test_tui_against_a_server_endpoint() -> None:
    from tests.openai_fault_server import FaultServer

    with FaultServer("ok") as srv:
        app = LocalLLMApp(model_path=srv.url)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.session.model is not None)
            assert f"server {srv.url}/v1" in str(app.query_one(StatusBar).render())
            await send(pilot, app, "hi")
            await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating)
            assert app.query(AssistantMessage).last().text == "Hello there friend"
            rows = panel_rows(app)
            assert rows["client CPU"] != "-"  # our own side, measured apart from the server's


async def test_the_panel_of_a_model_behind_llama_server_shows_the_server_block() -> None:
    """A server whose /metrics replays recorded llama-server bodies (the counters grow once a request came):
    the panel names the server and shows the reply's cached prompt tokens and prefill rate, as the server
    counted them."""
    from tests.metrics_server import recorded
    from tests.sse_server import SseServer

    served: list[SseServer] = []

    def metrics() -> str:
        return recorded("llama_server_b.txt" if served[0].bodies else "llama_server_a.txt")

    with SseServer(ttft_s=0.01, interval_s=0.005, metrics=metrics) as srv:
        served.append(srv)
        app = LocalLLMApp(model_path=srv.url, sampling=SamplingParams(max_tokens=4))
        async with app.run_test(size=(100, 60)) as pilot:
            await wait_for(pilot, lambda: panel_rows(app).get("server") == "llama-server")
            await send(pilot, app, "hi")
            await wait_for(pilot, lambda: "server prefill" in panel_rows(app))
            rows = panel_rows(app)
            assert rows["server cached"] == "500/900 tok" and rows["server prefill"] == "400.0 tok/s"


async def test_server_dying_mid_reply_is_a_message_and_the_app_stays_up() -> None:
    from tests.openai_fault_server import FaultServer

    with FaultServer("die") as srv:
        app = LocalLLMApp(model_path=srv.url)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.session.model is not None)
            await send(pilot, app, "hi")
            await wait_for(pilot, lambda: bool(app.query(ErrorMessage)))
            await wait_for(pilot, lambda: not app.generating)
            assert "broke" in str(app.query(ErrorMessage).last().render())
            assert app.query(AssistantMessage).last().text.startswith("Hello")  # partial kept
            assert app.session.history[-1].status == "error"


async def test_model_picker_lists_servers_running_here(monkeypatch) -> None:
    from textual.widgets import OptionList

    from localllm.models import endpoints
    from localllm.ui.screens.open_model import OpenModelScreen
    from tests.openai_fault_server import FaultServer

    with FaultServer("ok") as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        monkeypatch.setattr(endpoints, "USUAL_PORTS", {port: "test-server"})
        app = LocalLLMApp(load_options=LoadOptions(context=512))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.session.model is not None)
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen))
            options = app.screen.query_one(OptionList)
            await wait_for(pilot, lambda: any("test-server" in str(o.prompt) for o in options.options))
            index = next(i for i, o in enumerate(options.options) if "test-server" in str(o.prompt))
            options.focus()
            options.highlighted = index
            await pilot.press("enter")
            await wait_for(pilot, lambda: getattr(app.session.model, "backend", None) == "remote")
            assert app.session.model.name == "fault-model"


async def test_download_from_the_hub_in_the_models_screen_then_chat(tmp_path, monkeypatch, model_path) -> None:
    from textual.widgets import OptionList

    from localllm.ui.screens.open_model import OpenModelScreen
    from tests.hubserver import HubServer

    with HubServer() as hub, open(model_path, "rb") as fh:
        hub.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", {"SmolLM2-135M-Instruct.Q4_1.gguf": fh.read()})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        app = LocalLLMApp(sampling=SamplingParams(max_tokens=4, ignore_eos=True), load_options=LoadOptions(context=512))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.session.model is not None)
            first_path = app.session.model.path
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen))
            repo = app.screen.query_one("#pull-repo", Input)
            repo.value = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF q4_1"
            repo.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: not isinstance(app.screen, OpenModelScreen), timeout=120)
            await wait_for(pilot, lambda: getattr(app.session.model, "path", first_path) != first_path,
                           timeout=120)
            assert app.session.model.path.startswith(str(tmp_path / "hub"))
            await send(pilot, app, "Hi")
            await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating)
            assert app.session.history[-1].stats.completion_tokens == 4
            # and the library lists it next time
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen))
            options = app.screen.query_one(OptionList)
            await wait_for(pilot, lambda: any("hf-cache" in str(o.prompt) for o in options.options))


async def test_saved_servers_list_their_models_and_a_typed_url_can_be_saved(monkeypatch) -> None:
    import socket

    from textual.widgets import OptionList

    from localllm.config.settings import Settings, load_settings
    from localllm.models import endpoints
    from localllm.ui.screens.open_model import OpenModelScreen
    from tests.openai_fault_server import FaultServer

    with socket.socket() as s:  # a port nobody listens on: the saved server that is down
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(endpoints, "USUAL_PORTS", {})  # only the saved servers are asked
    with FaultServer("ok") as srv, FaultServer("ok") as other:
        app = LocalLLMApp(load_options=LoadOptions(context=512), settings=Settings(endpoints=[srv.url, dead]))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.session.model is not None)
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen))
            options = app.screen.query_one(OptionList)

            def prompts() -> list[str]:
                return [str(o.prompt) for o in options.options]

            await wait_for(pilot, lambda: any("not answering" in p for p in prompts()))
            await wait_for(pilot, lambda: any(p.startswith("fault-model · saved server") for p in prompts()))
            down = next(o for o in options.options if "not answering" in str(o.prompt))
            assert down.disabled and dead in str(down.prompt)
            # a typed URL is saved to the settings file and asked for its models at once
            app.screen.query_one("#open-path", Input).value = other.url
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: other.url in load_settings().endpoints)
            assert load_settings().endpoints == [srv.url, dead, other.url]
            await wait_for(pilot, lambda: any(f"saved server {other.url}" in p for p in prompts()))
            # picking a model of a saved server loads it through the remote backend
            index = next(i for i, p in enumerate(prompts()) if p == f"fault-model · saved server {srv.url}")
            options.focus()
            options.highlighted = index
            await pilot.press("enter")
            await wait_for(pilot, lambda: getattr(app.session.model, "backend", None) == "remote")
            assert app.session.model.name == "fault-model" and app.session.model.path == srv.url + "/v1"


async def test_a_gpu_the_binding_cannot_use_is_said_in_the_status_bar(monkeypatch) -> None:
    """NVML (faked) sees an RTX 4090, the installed llama-cpp-python says it cannot offload: the status bar
    says so and a notification carries the exact reinstall command."""
    import json

    from localllm.machine import hardware
    from localllm.machine.hardware import HardwareInfo
    from localllm.runtime import binding
    from tests.unit.test_plan import MACHINES

    gpu_box = HardwareInfo.from_dict(json.loads((MACHINES / "gpu-24gb.json").read_text()))
    monkeypatch.setattr(hardware, "probe", lambda *a, **k: gpu_box)
    cpu_build = binding.BindingCaps(version="0.3.36", gpu_offload=False, extra_bufts_ok=True,
                                    system_info="CPU : SSE3 = 1 | AVX2 = 1 |")
    monkeypatch.setattr(binding, "cached", lambda: cpu_build)
    monkeypatch.setattr(binding, "capabilities", lambda *a, **k: cpu_build)
    app = LocalLLMApp(load_options=LoadOptions(context=512))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "GPU unused" in str(app.query_one(StatusBar).render()))
        assert app.session.model.n_gpu_layers == 0  # the plan put nothing on a GPU it cannot use

        def fix_shown() -> bool:
            return any('CMAKE_ARGS="-DGGML_CUDA=on"' in str(n.message) and "--force-reinstall" in str(n.message)
                       for n in app._notifications)

        await wait_for(pilot, fix_shown, timeout=30)


async def test_a_load_shows_its_progress_and_then_its_time() -> None:
    app = LocalLLMApp()
    states: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None and not app.session.loading)
        seen = app.chat._set_state

        def record(state: str) -> None:
            states.append(state)
            seen(state)

        app.chat._set_state = record
        app.chat.load_model(None)  # a second load of the embedded model, recorded from its start
        await wait_for(pilot, lambda: any("100%" in s for s in states))
        await wait_for(pilot, lambda: app.session.model is not None and not app.session.loading
                       and "load" in panel_rows(app))
        percents = [int(s.split("…")[1].split("%")[0]) for s in states if "%" in s]
        assert percents == sorted(percents) and percents[-1] == 100 and len(percents) >= 3
        assert panel_rows(app)["load"].endswith(("ms", " s")) and app.session.model.load_s > 0
