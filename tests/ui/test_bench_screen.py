"""The benchmark screen, driven by a pilot: the real embedded model beside a corrupt file, live
progress, the table, the charts, the saved result and its exports; and a cancel mid-plan."""

from __future__ import annotations

import pytest
from textual.app import App
from textual.widgets import DataTable, Input, SelectionList, Static

from localllm.bench import export as bench_export
from localllm.bench import results as bench_results
from localllm.config import LoadOptions
from localllm.ui.app import LocalLLMApp
from localllm.ui.screens.bench_screen import BenchScreen, family, parse_threads
from localllm.ui.widgets.bench_charts import BenchCharts
from tests.ui.hosts import ScreenHost
from tests.unit.test_stores import env, store_tree  # noqa: F401  (the built stores)
from tests.waits import wait_for

SIZE = (100, 32)


def set_plan(screen: BenchScreen, **values: str) -> None:
    for key, value in values.items():
        screen.query_one(f"#bench-{key}", Input).value = value


def cells(screen: BenchScreen) -> list[dict[str, str]]:
    table = screen.query_one("#bench-table", DataTable)
    head = [str(c.label) for c in table.columns.values()]
    return [dict(zip(head, (str(c) for c in table.get_row_at(i)), strict=True)) for i in range(table.row_count)]


@pytest.mark.slow
async def test_a_plan_runs_shows_table_and_charts_saves_and_exports(tmp_path) -> None:
    junk = tmp_path / "corrupt.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 64)
    app = LocalLLMApp(load_options=LoadOptions(context=256))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)  # the chat's own load, out of the way
        screen = BenchScreen()
        app.push_screen(screen)
        await wait_for(pilot, lambda: app.screen is screen and screen.is_mounted)
        models = screen.query_one("#bench-models", SelectionList)
        assert models.selected == ["embedded"]  # picked by default, as the CLI does
        add = screen.query_one("#bench-add", Input)
        add.value = str(junk)
        add.focus()
        await pilot.press("enter")
        assert models.selected == ["embedded", str(junk)] and add.value == ""
        # one thread: llama.cpp's spinning thread pool crawls when a shared 2-core CPU is busy
        set_plan(screen, reps="1", warmup="0", gen="8", prompt="30", threads="1")
        await pilot.press("ctrl+r")  # the app's own Ctrl+R (regenerate) must not take it
        await wait_for(pilot, lambda: screen.last_progress is not None)
        if screen.result is None:  # still running (it always is on a machine this slow)
            assert screen.query_one("#bench-run").disabled and not screen.query_one("#bench-cancel").disabled
        await wait_for(pilot, lambda: screen.result is not None)
        await pilot.pause()

        result = screen.result
        assert [r.status for r in result.rows] == ["ok", "failed"], [r.reason for r in result.rows]
        rows = cells(screen)
        assert [r["status"] for r in rows] == ["ok", "failed"]
        assert rows[0]["config"] == "SmolLM2-135M-Instruct.Q4_1 · 1 thread" and rows[0]["quant"] == "Q4_1"
        assert float(rows[0]["decode tok/s"]) > 0 and rows[1]["decode tok/s"] == "-"
        notes = str(screen.query_one("#bench-notes", Static).render())
        assert "2 corrupt · 1 thread: failed: Cannot use model file" in notes
        assert "GGUF header is damaged" in notes
        status = str(screen.query_one("#bench-status").render())
        assert "Finished: 1 of 2 ran, 1 failed" in status and str(screen.saved_path) in status
        assert not screen.query_one("#bench-run").disabled

        charts = screen.query_one(BenchCharts)
        decode = result.rows[0].columns["decode_tok_s"].mean
        assert charts.bars["decode_tok_s"] == [("1", decode)]  # the failed row has no bar
        assert charts.bars["rss_peak_mib"][0][1] > 50 and charts.bars["ttft_ms"][0][1] > 0
        assert "2 corrupt · 1 thread (failed)" in str(charts.query_one("#chart-legend").render())
        await pilot.press("ctrl+t")
        assert screen.query_one("#bench-views").active == "bench-charts-pane"

        saved = bench_results.load(screen.saved_path)
        assert saved.to_dict() == bench_export.from_json(bench_export.to_json(result)).to_dict()
        for key in ("f5", "f6", "f7"):
            await pilot.press(key)
        assert set(screen.exported) == {"md", "csv", "json"}
        md = bench_export.parse_markdown(screen.exported["md"].read_text())
        assert [(r["config"], r["status"]) for r in md] == [(r.label, r.status) for r in result.rows]
        assert bench_export.parse_cell(md[0]["decode tok/s"])[0] == pytest.approx(decode, rel=1e-3)
        csv_rows = bench_export.parse_csv(screen.exported["csv"].read_text())
        assert csv_rows[0]["decode_tok_s_mean"] == decode and csv_rows[1]["status"] == "failed"
        assert "GGUF header is damaged" in csv_rows[1]["reason"]
        assert bench_results.load(screen.exported["json"]).rows[1].status == "failed"
        assert {p.parent for p in screen.exported.values()} == {screen.saved_path.parent}

        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is not screen)


class BenchApp(App):
    def on_mount(self) -> None:
        self.push_screen(BenchScreen())


@pytest.mark.slow
async def test_cancel_mid_plan_keeps_partial_rows_and_the_screen_stays_usable() -> None:
    app = BenchApp()
    async with app.run_test(size=(80, 24)) as pilot:  # the smallest size the app promises
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen) and app.screen.is_mounted)
        screen = app.screen
        # two configurations (the embedded model twice) and many repetitions: it cannot finish before the cancel
        set_plan(screen, reps="50", warmup="0", gen="16", prompt="30", threads="1,1")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.last_progress is not None
                       and screen.last_progress.phase in ("loaded", "rep"))
        await pilot.press("escape")  # the first Esc cancels the run; the screen stays
        await wait_for(pilot, lambda: screen.result is not None)
        await pilot.pause()
        assert app.screen is screen
        result = screen.result
        assert result.cancelled
        assert [r.status for r in result.rows] == ["cancelled", "skipped"]
        assert "cancelled after" in result.rows[0].reason and len(result.rows[0].reps) < 50
        assert [r["status"] for r in cells(screen)] == ["cancelled", "skipped"]
        notes = str(screen.query_one("#bench-notes", Static).render())
        assert "skipped: the plan was cancelled before this configuration" in notes
        assert "Cancelled, partial results" in str(screen.query_one("#bench-status").render())
        assert bench_results.load(screen.saved_path).cancelled

        # usable again: a bad value is refused with a message, exports work, Esc closes
        assert not screen.query_one("#bench-run").disabled
        set_plan(screen, reps="0")
        await pilot.press("ctrl+r")
        assert "Repetitions must be at least 1" in str(screen.query_one("#bench-status").render())
        assert screen.last_progress.phase in ("cancelled", "skipped")  # nothing started
        await pilot.press("f5")
        assert "CANCELLED (partial)" in screen.exported["md"].read_text()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, BenchScreen))


def test_same_model_in_every_format_and_thread_lists() -> None:
    names = ["SmolLM2-135M-Instruct (embedded)", "SmolLM2-135M-Instruct.Q8_0.gguf",
             "smollm2-135m-instruct-q4_k_m.gguf", "SmolLM2-135M-Instruct-GPTQ-Int4", "SmolLM2-360M-Instruct"]
    assert [family(n) for n in names] == ["smollm2-135m-instruct"] * 4 + ["smollm2-360m-instruct"]
    assert family("Qwen2.5-0.5B-Instruct-IQ4_XS.gguf") == "qwen2.5-0.5b-instruct"
    assert parse_threads("1, 2,4") == [1, 2, 4] and parse_threads("") == [0]
    with pytest.raises(ValueError, match="Threads"):
        parse_threads("two")


async def test_same_model_action_picks_every_format_of_the_highlighted_one(tmp_path) -> None:
    app = BenchApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen) and app.screen.is_mounted)
        screen = app.screen
        add = screen.query_one("#bench-add", Input)
        for name in ("SmolLM2-135M-Instruct.Q8_0.gguf", "other-model.Q4_0.gguf"):
            add.value = str(tmp_path / name)
            add.focus()
            await pilot.press("enter")
        models = screen.query_one("#bench-models", SelectionList)
        models.deselect_all()
        models.focus()
        models.highlighted = 0  # the embedded SmolLM2
        await pilot.press("ctrl+f")
        assert models.selected == ["embedded", str(tmp_path / "SmolLM2-135M-Instruct.Q8_0.gguf")]
        models.deselect_all()
        await pilot.press("ctrl+r")  # nothing picked: a message, no run
        assert "no configuration" in str(screen.query_one("#bench-status").render())
        assert screen.last_progress is None


@pytest.mark.parametrize(("loaded", "label"), [
    ("{tmp}/mine-Q4_K_M.gguf", "mine-Q4_K_M.gguf · loaded in the chat"),
    # a server's user:pass@ is never shown (it was: the label was the URL as given)
    ("http://bob:secret@127.0.0.1:9/v1#qwen", "http://127.0.0.1:9/v1#qwen · loaded in the chat"),
], ids=["file", "server-with-credentials"])
async def test_the_chats_model_is_listed_first_and_picked(tmp_path, monkeypatch, loaded, label) -> None:
    """F5 while the chat has another model loaded: that model is the one a timing run is for."""
    monkeypatch.setattr("localllm.models.library.other_tools_models", lambda listed: [])
    loaded = loaded.format(tmp=tmp_path)

    app = ScreenHost(BenchScreen(current=loaded))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen) and app.screen.is_mounted)
        models = app.screen.query_one("#bench-models", SelectionList)
        assert str(models.get_option_at_index(0).prompt) == label
        assert models.selected == [loaded]  # the embedded model is listed, not picked


async def test_ollama_and_lm_studio_models_are_offered_by_ref(env, monkeypatch) -> None:  # noqa: F811
    from localllm.models import endpoints

    monkeypatch.setattr(endpoints, "USUAL_PORTS", {})

    app = ScreenHost(BenchScreen())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen) and app.screen.is_mounted)
        models = app.screen.query_one("#bench-models", SelectionList)
        ref = "lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf"

        def values() -> list[str]:
            return [models.get_option_at_index(i).value for i in range(models.option_count)]

        await wait_for(pilot, lambda: ref in values(), timeout=60)
        prompt = str(models.get_option_at_index(values().index(ref)).prompt)
        assert prompt.startswith("acme/Split-GGUF/split-Q4_K_M.gguf · gguf Q4_K_M") and prompt.endswith("lmstudio")
        assert not any("smollm2" in v for v in values())  # the stores' copies of the embedded model: that entry
