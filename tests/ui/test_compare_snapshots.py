"""How the compare screen looks at 80x24 (two columns in view, the third scrolled to) and 160x48 (all
three). A finished comparison with fixed figures is shown, so no model timing can move a picture.
Update after a deliberate change: `pytest tests/ui/test_compare_snapshots.py --snapshot-update`."""

from __future__ import annotations

import pytest

from localllm.chat.compare import CompareResult, Comparison
from localllm.config.settings import Settings
from localllm.runtime.metrics import ReplyStats
from localllm.ui.app import LocalLLMApp
from localllm.ui.screens.compare_screen import CompareScreen
from tests.openai_fault_server import FaultServer
from tests.ui.test_snapshots import loaded

pytestmark = pytest.mark.slow  # a loopback server behind the chat screen: not in the quick tier

SIZES = [(80, 24), (160, 48)]


def stats(ttft: float, rate: float, user: float, rss: float) -> dict:
    return ReplyStats(wall_s=0.9, cpu_user_s=user, cpu_sys_s=0.04, ttft_s=ttft, prompt_tokens=31,
                      completion_tokens=16, prefill_tok_s=250.0, decode_tok_s=rate, rss_peak_mib=rss,
                      finish_reason="length", live=False).to_dict()


FIXED = Comparison("Name three colours of a lighthouse.", [
    CompareResult("embedded", "SmolLM2-135M-Instruct", "Q4_1",
                  "Lighthouses are often painted red and white, or black and white, so ships can see",
                  stats(0.12, 88.4, 1.42, 208.0), "", "length"),
    CompareResult("/models/SmolLM2-135M-Instruct.Q8_0.gguf", "SmolLM2-135M-Instruct", "Q8_0",
                  "Red, white and black are the usual colours of a lighthouse tower.",
                  stats(0.15, 61.7, 1.87, 251.0), "", "ok"),
    CompareResult("/models/missing.gguf", "missing", "", "", None,
                  "Model file not found: /models/missing.gguf", "error"),
], "You are a helpful assistant.", {"max_tokens": 16})


@pytest.fixture(scope="module")
def server():
    with FaultServer("ok") as srv:
        yield srv


async def show_fixed(pilot) -> None:
    app = pilot.app
    await loaded(pilot)
    app.query_one("#prompt").value = FIXED.prompt
    await pilot.press("ctrl+e")
    while not isinstance(app.screen, CompareScreen) or not app.screen.library_done:
        await pilot.pause(0.05)
    await pilot.pause()  # the specs Input's focus (select-on-focus) has been handled
    await app.screen.show_comparison(FIXED)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_screen(snap_compare, server, size) -> None:
    app = LocalLLMApp(model_path=server.url, settings=Settings(theme="localllm-dark", save_conversations=False))
    assert snap_compare(app, terminal_size=size, run_before=show_fixed)
