"""Themes remembered, conversations saved as they happen and reopened, through the real TUI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from localllm.chat.conversations import ConversationStore
from localllm.config import LoadOptions, SamplingParams
from localllm.config.settings import load_settings
from localllm.ui.app import LocalLLMApp
from localllm.ui.screens.conversations_screen import ConversationsScreen
from localllm.ui.widgets.chat_log import AssistantMessage, UserMessage
from tests.ui.test_app import SIZE, send, wait_for

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier


async def test_theme_switch_is_remembered(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    app = LocalLLMApp(load_options=LoadOptions(context=256))
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "localllm-dark"
        app.theme = "localllm-high-contrast"
        await pilot.pause()
    assert load_settings().theme == "localllm-high-contrast"
    again = LocalLLMApp(load_options=LoadOptions(context=256))
    assert again.theme == "localllm-high-contrast"


async def test_replies_are_saved_and_reopened(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    app = LocalLLMApp(sampling=SamplingParams(max_tokens=6, ignore_eos=True, seed=1),
                      load_options=LoadOptions(context=512))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        await send(pilot, app, "First question")
        await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating)
        await send(pilot, app, "Second question")
        await wait_for(pilot, lambda: len(app.session.history) == 4 and not app.generating)
        replies = [t.content for t in app.session.history if t.role == "assistant"]
        cid = app.recorder.conversation_id
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: not app.query(UserMessage))
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.query(UserMessage)) == 2)
        assert app.recorder.conversation_id == cid
        assert [t.content for t in app.session.history if t.role == "assistant"] == replies
        assert "6 tok" in str(app.query(AssistantMessage).last().stats.render())  # saved numbers shown
    with ConversationStore(tmp_path / "conversations.db") as store:
        conv = store.load(cid)
    assert [t.role for t in conv.turns] == ["user", "assistant", "user", "assistant"]
    assert conv.turns[1].stats["completion_tokens"] == 6 and conv.turns[1].model["quant"] == "Q4_1"


APP_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from textual.widgets import Input
    from localllm.config import LoadOptions, SamplingParams
    from localllm.ui.app import LocalLLMApp

    async def main():
        app = LocalLLMApp(sampling=SamplingParams(max_tokens=8, ignore_eos=True, seed=1),
                          load_options=LoadOptions(context=4096))
        async with app.run_test(size=(100, 30)) as pilot:
            while app.session.model is None:
                await asyncio.sleep(0.1)
            for i, text in enumerate(["one", "two"]):
                app.query_one("#prompt", Input).value = text
                await pilot.press("enter")
                while len(app.session.history) < 2 * (i + 1) or app.generating:
                    await asyncio.sleep(0.1)
            app.session.sampling = SamplingParams(max_tokens=3000, ignore_eos=True)
            app.query_one("#prompt", Input).value = "three"
            await pilot.press("enter")
            while not (app.chat.reply is not None and app.chat.reply.text):
                await asyncio.sleep(0.05)
            print("STREAMING", flush=True)
            await asyncio.sleep(600)

    asyncio.run(main())
""")


def test_killing_the_app_mid_reply_keeps_every_completed_turn(tmp_path) -> None:
    env = dict(os.environ, LOCALLLM_HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", APP_SCRIPT], stdout=subprocess.PIPE, env=env, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 180
        line = ""
        while "STREAMING" not in line:
            assert time.monotonic() < deadline and proc.poll() is None, "the app did not start streaming"
            line = proc.stdout.readline()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    with ConversationStore(tmp_path / "conversations.db") as store:
        [summary] = store.list()
        conv = store.load(summary.id)
    roles = [(t.role, t.content if t.role == "user" else bool(t.content)) for t in conv.turns]
    assert roles == [("user", "one"), ("assistant", True), ("user", "two"), ("assistant", True),
                     ("user", "three")]  # the reply being generated is the only thing lost
    assert all(t.stats["completion_tokens"] == 8 for t in conv.turns if t.role == "assistant")
