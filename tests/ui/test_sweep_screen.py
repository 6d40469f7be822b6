"""The timing-run screen's load sweep (Ctrl+W): levels against a deterministic loopback server fill
the table and the charts as they finish, the knee is named and the sweep is saved."""

from __future__ import annotations

import json

from textual.widgets import DataTable, Input

from localllm.ui.screens.sweep_screen import SweepScreen
from tests.sse_server import SseServer
from tests.ui.hosts import ScreenHost
from tests.waits import wait_for

SIZE = (120, 40)


async def test_a_sweep_fills_table_and_chart_and_names_the_knee(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    # one stream at a time: TTFT p90 grows with concurrency, so a 500 ms TTFT target holds only at 1 (about
    # 0.2 s there, about 0.9 s at 3 where the last stream waits for two 0.36 s ones: wide margins, as a busy
    # host adds its delays to both; with 0.1 s / 300 ms it missed at level 1 once under load)
    with SseServer(ttft_s=0.2, interval_s=0.02, serial=True) as server:
        screen = SweepScreen(server.url)
        async with ScreenHost(screen).run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: screen.is_mounted)
            screen.query_one("#sweep-levels", Input).value = "1,3"
            screen.query_one("#sweep-requests", Input).value = "3"
            screen.query_one("#sweep-gen", Input).value = "8"
            screen.query_one("#sweep-slo", Input).value = "ttft=500ms"
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: screen.result is not None, timeout=120)
            table = screen.query_one("#sweep-table", DataTable)
            assert table.row_count == 2 and [lv.level for lv in screen.levels] == [1, 3]
            assert screen.result.knee == 1
            assert screen.levels[1].ttft.p90 > screen.levels[0].ttft.p90
            status = str(screen.query_one("#sweep-status").render())
            assert "knee at concurrency 1" in status and "TTFT ≤ 500 ms" in status
            tok = screen.query_one("#sweep-tok").plt
            assert "knee 1" in tok._active.monitor.title  # the chart is titled with the knee
    saved = json.loads(screen.saved_path.read_text())
    assert saved["knee"] == 1 and sum(len(lv["samples"]) for lv in saved["levels"]) == 6


async def test_a_bad_server_url_says_what_to_type(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    screen = SweepScreen("")
    async with ScreenHost(screen).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.is_mounted)
        screen.query_one("#sweep-url", Input).value = "localhost"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "OpenAI-compatible server's URL" in str(screen.query_one("#sweep-status").render()))
        assert screen.result is None and screen._cancel is None


def _table(screen: SweepScreen) -> tuple[list[str], list[list[str]]]:
    table = screen.query_one("#sweep-table", DataTable)
    heads = [str(c.label) for c in table.columns.values()]
    return heads, [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def _sweep(pilot, screen: SweepScreen, levels: str) -> None:
    await wait_for(pilot, lambda: screen.is_mounted)
    screen.query_one("#sweep-levels", Input).value = levels
    screen.query_one("#sweep-requests", Input).value = "2"
    screen.query_one("#sweep-gen", Input).value = "4"
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: screen.result is not None, timeout=120)


async def test_the_server_columns_of_each_level_are_shown_as_in_the_report(tmp_path, monkeypatch) -> None:
    """The server's /metrics replays recorded vLLM bodies (before the first request, then after): the table
    gains the columns the Markdown report has, those the server gave, and names the server below."""
    from localllm.bench.load_report import SERVER_COLUMNS, markdown
    from tests.metrics_server import recorded

    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    served: list[SseServer] = []

    def metrics() -> str:
        return recorded("vllm_b.txt" if served[0].bodies else "vllm_a.txt")

    with SseServer(ttft_s=0.01, interval_s=0.002, metrics=metrics) as server:
        served.append(server)
        screen = SweepScreen(server.url)
        async with ScreenHost(screen).run_test(size=SIZE) as pilot:
            await _sweep(pilot, screen, "2")
            heads, rows = _table(screen)
            note = str(screen.query_one("#sweep-server").render())
            report = markdown(screen.result)
    server_heads = heads[heads.index("goodput") + 1:]
    assert server_heads[:6] == ["Reused prompt tok", "KV peak %", "Waiting peak", "Preemptions",
                                "Server queue ms", "Server prefill ms"]
    assert server_heads == [heading for _, heading, _ in SERVER_COLUMNS if heading in report]  # the report's
    assert rows[0][-len(server_heads):][:6] == ["500", "81", "1", "2", "1000.0", "500.0"]
    assert "| " + " | ".join(rows[0][-len(server_heads):]) + " |" in report  # the Markdown row ends alike
    assert note.startswith("Server: vLLM") and note in report


async def test_a_server_without_metrics_gets_no_server_columns_but_is_named(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    with SseServer(ttft_s=0.01, interval_s=0.002) as server:
        screen = SweepScreen(server.url)
        async with ScreenHost(screen).run_test(size=SIZE) as pilot:
            await _sweep(pilot, screen, "1,2")
            heads, rows = _table(screen)
            note = str(screen.query_one("#sweep-server").render())
    assert heads[-1] == "goodput" and len(rows) == 2
    assert note == "Server: OpenAI-compatible (no /api/ps, /metrics, /props)"
