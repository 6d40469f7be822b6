"""How the main screens look, in every shipped theme, at 80x24 and 120x40.

The model is our scripted loopback server (a fixed reply) and the numbers are fixed after the
reply, so only a change in the app's looks can change a picture. Update after a deliberate change:
`pytest tests/ui/test_snapshots.py --snapshot-update`."""

from __future__ import annotations

import asyncio

import pytest

from localllm.config.settings import Settings
from localllm.runtime.metrics import ReplyStats
from localllm.ui.app import LocalLLMApp
from localllm.ui.widgets.chat_log import AssistantMessage
from localllm.ui.widgets.metrics_panel import MetricsPanel
from localllm.ui.widgets.status_bar import StatusBar
from tests.openai_fault_server import FaultServer

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier

THEMES = ["localllm-dark", "localllm-light", "localllm-high-contrast"]
SIZES = [(80, 24), (120, 40)]
FIXED = ReplyStats(wall_s=0.8, cpu_user_s=1.42, cpu_sys_s=0.03, ttft_s=0.12, prompt_tokens=24,
                   completion_tokens=61, prefill_tok_s=200.0, decode_tok_s=88.4, latency_p50_ms=11.2,
                   latency_p90_ms=12.9, rss_now_mib=207.0, rss_peak_mib=208.0, finish_reason="stop",
                   live=False)


@pytest.fixture(scope="module")
def server():
    with FaultServer("ok") as srv:
        yield srv


def make_app(server, theme: str) -> LocalLLMApp:
    return LocalLLMApp(model_path=server.url, settings=Settings(theme=theme, save_conversations=False))


async def loaded(pilot) -> None:
    app = pilot.app
    while app.query_one(StatusBar).model is None:  # on_model_loaded has run
        await asyncio.sleep(0.05)
    app.chat._sampler = None  # no live memory samples: the picture must not move
    panel = app.query_one(MetricsPanel)
    # the server block comes from a sample taken in a thread after the load: wait for it, or whether the
    # picture has it is a race
    deadline = asyncio.get_running_loop().time() + 30
    while panel.server is None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert panel.server is not None, "the server block never came"
    panel.rss, panel.estimate_mib = None, None  # nor one an idle tick took before the line above
    panel.load_s = None  # how long the load took differs from run to run
    panel.rss_history.clear()
    panel.refresh()
    app.query_one("#prompt").cursor_blink = False
    model = app.query_one(StatusBar).model
    model.name, model.path = "scripted-model", "http://127.0.0.1:PORT/v1"  # the port changes per run
    app.query_one(StatusBar).refresh()
    # the footer recomposes after the prompt takes focus: wait for its keys, or a screen pushed on top
    # may be captured over a footer still being rebuilt
    from textual.widgets._footer import FooterKey

    while len(app.screen.query(FooterKey)) < len(app.BINDINGS):
        await asyncio.sleep(0.05)
    await pilot.pause()


async def chat_and_freeze(pilot) -> None:
    app = pilot.app
    await loaded(pilot)
    app.query_one("#prompt").value = "Say hello"
    await pilot.press("enter")
    while len(app.session.history) < 2 or app.generating:
        await asyncio.sleep(0.05)
    app.chat._sampler = None  # the end of a reply starts memory sampling again
    await app.query(AssistantMessage).last().finish(FIXED, "ok")
    panel = app.query_one(MetricsPanel)
    panel.rate_history.clear()
    panel.rate_history.extend([40.0, 80.0, 88.0, 90.0, 86.0])
    panel.rss_history.clear()
    panel.rss_history.extend([150.0, 205.0, 207.0])
    panel.rss = (207.0, 208.0)
    panel.show_stats(FIXED)
    app.query_one(StatusBar).refresh()
    # The prompt takes focus back after a reply on its own schedule, and Textual draws its cursor when the
    # Focus message is handled: whether a picture had a cursor was a race (CI failed on it). The pictures
    # are taken with nothing focused (no cursor), once the prompt's blur has been handled.
    prompt = app.query_one("#prompt")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        app.screen.set_focus(None)
        await pilot.pause()
        if app.focused is None and not prompt.has_focus:
            break
        await asyncio.sleep(0.05)
    assert app.focused is None and not prompt.has_focus, "the prompt kept taking the focus back"
    await pilot.pause()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_screen(snap_compare, server, theme, size) -> None:
    assert snap_compare(make_app(server, theme), terminal_size=size, run_before=chat_and_freeze)


@pytest.mark.parametrize("theme", THEMES)
def test_help_screen(snap_compare, server, theme) -> None:
    async def open_help(pilot) -> None:
        await loaded(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(make_app(server, theme), terminal_size=(80, 24), run_before=open_help)
