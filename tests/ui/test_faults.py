"""Faults a user hits on an ordinary day, driven through the TUI with a pilot: a stalled server and
Esc, an odd path in the model picker, Ctrl+O and Esc during a load, a locked conversation database."""

from __future__ import annotations

import sqlite3
import time

import psutil
import pytest
from textual.widgets import Input

from localllm.ui.app import LocalLLMApp
from localllm.ui.screens.open_model import OpenModelScreen
from localllm.ui.widgets.chat_log import AssistantMessage, ErrorMessage
from localllm.ui.widgets.status_bar import StatusBar
from tests.waits import wait_for

SIZE = (100, 32)


async def send(pilot, app, text: str) -> None:
    prompt = app.query_one("#prompt", Input)
    prompt.value = text
    prompt.focus()
    await pilot.press("enter")


def errors(app) -> str:
    return " ".join(str(e.render()) for e in app.query(ErrorMessage))


def workers(but: frozenset[int] = frozenset()) -> list[psutil.Process]:
    """This test process's model workers that are still running, except the pids in `but` (module-scoped
    fixtures of other test files may hold workers of their own while this one runs)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if ("localllm.runtime.worker_main" in " ".join(child.cmdline()) and child.status() != "zombie"
                    and child.pid not in but):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.mark.slow
async def test_esc_against_a_stalled_server_stops_the_reply_within_a_second() -> None:
    from tests.openai_fault_server import FaultServer

    with FaultServer("hang") as srv:  # three words, then silence with the connection open
        app = LocalLLMApp(model_path=srv.url)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.session.model is not None)
            await send(pilot, app, "hi")
            # the first words reached the meter (the screen paints them at its own pace)
            await wait_for(pilot, lambda: (app.session.live_stats() or 0) and
                           app.session.live_stats().completion_tokens >= 1)
            pressed = time.monotonic()
            await pilot.press("escape")
            await wait_for(pilot, lambda: not app.generating, timeout=60)
            took = time.monotonic() - pressed
            assert took < 1.0, f"Esc took {took:.2f} s against a stalled server"
            assert app.session.history[-1].status == "stopped"
            assert app.session.history[-1].content.startswith("Hello")  # what arrived is kept
            assert not errors(app)


async def test_an_odd_path_in_the_model_picker_is_an_error_message_not_a_stuck_load() -> None:
    """`~nosuchuser/x.gguf` makes Path.expanduser() raise RuntimeError, which is no LocalLLMError."""
    app = LocalLLMApp(model_path="~nosuchuser/first.gguf")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: bool(app.query(ErrorMessage)))
        await wait_for(pilot, lambda: "no model loaded" in str(app.query_one(StatusBar).render()))
        assert "first.gguf" in errors(app)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen))
        app.screen.query_one("#open-path", Input).value = "~nosuchuser/x.gguf"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "x.gguf" in errors(app))
        await wait_for(pilot, lambda: "no model loaded" in str(app.query_one(StatusBar).render()))
        await pilot.press("ctrl+o")  # the app still takes a new pick
        await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen))


@pytest.mark.slow
async def test_ctrl_o_during_a_load_starts_no_second_load_and_esc_cancels_one() -> None:
    others = frozenset(w.pid for w in workers())
    app = LocalLLMApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.loading)
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert not isinstance(app.screen, OpenModelScreen)  # no picker, so no second load
        await wait_for(pilot, lambda: app.session.model is not None and not app.session.loading)
        assert len(workers(others)) == 1

        # Esc during a load stops it: its worker is killed, the app says so and takes a new pick
        app.chat.load_model(None)
        await wait_for(pilot, lambda: app.session._loading is not None and app.session._loading.pid)
        await pilot.press("escape")
        await wait_for(pilot, lambda: "cancelled" in errors(app))
        await wait_for(pilot, lambda: not workers(others), timeout=30)
        assert app.session.model is None
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen))


@pytest.mark.slow
async def test_a_locked_database_keeps_the_reply_says_why_and_saves_at_the_next_write(monkeypatch) -> None:
    from localllm.chat import conversations
    from localllm.config import SamplingParams

    monkeypatch.setattr(conversations, "BUSY_TIMEOUT_S", 0.2, raising=False)  # the lock wait, not the fault, is shortened
    app = LocalLLMApp(sampling=SamplingParams(max_tokens=8, seed=1))
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        monkeypatch.setattr(app, "notify", lambda text, **kw: notes.append(str(text)))
        await wait_for(pilot, lambda: app.session.model is not None)
        path = app.recorder.store.path
        other = sqlite3.connect(path, isolation_level=None)  # another program holds the write lock
        other.execute("BEGIN EXCLUSIVE")
        try:
            await send(pilot, app, "Say hi.")
            await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating)
            assert app.is_running and app.query(AssistantMessage).last().text  # the reply stays on screen
            assert any("could not be saved" in n and "locked" in n for n in notes), notes
        finally:
            other.execute("ROLLBACK")
            other.close()
        await send(pilot, app, "Say bye.")
        await wait_for(pilot, lambda: len(app.session.history) == 4 and not app.generating)
        conv = app.recorder.store.load(app.recorder.conversation_id)
        assert [t.role for t in conv.turns] == ["user", "assistant", "user", "assistant"]
        assert [t.content for t in conv.turns] == [t.content for t in app.session.history]
        await pilot.press("f3")  # the History screen opens on the same database
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConversationsScreen")
