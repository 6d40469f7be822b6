"""The worker log viewer on a long log: it shows the tail, says that earlier lines were skipped, and
does not read the whole file."""

from __future__ import annotations

from textual.app import App
from textual.widgets import Log

from localllm.config import logs
from localllm.ui.screens.log_screen import LogScreen
from tests.waits import wait_for


async def test_a_5_mb_log_shows_its_tail(tmp_path) -> None:
    path = tmp_path / "worker-20250101-000000-1-0001.log"
    lines = [f"llama.cpp line {i:07d} " + "." * 70 for i in range(60_000)]
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 5 * 10**6
    app = App()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.push_screen(LogScreen(path))
        await wait_for(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.query_one(Log).lines)
        shown = list(app.screen.query_one(Log).lines)
    assert "earlier lines skipped" in shown[0]
    body = [ln for ln in shown[1:] if ln]
    assert body == lines[-len(body):]  # the tail, whole lines, ending with the last one
    assert sum(len(ln) + 1 for ln in body) <= logs.TAIL_BYTES
