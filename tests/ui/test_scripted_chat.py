"""Keypress -> reply -> panel in the quick tier: the real app, session, worker process, pipe and Meter,
with the scripted backend in the worker instead of llama.cpp (fixed tokens at set delays, no model), so
the figures the panel must show follow from the script."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Input

from localllm.backends.scripted import prompt_tokens
from localllm.config import SamplingParams
from localllm.config.settings import Settings
from localllm.ui.app import LocalLLMApp
from localllm.ui.widgets.chat_log import AssistantMessage, UserMessage
from localllm.ui.widgets.metrics_panel import MetricsPanel
from localllm.ui.widgets.status_bar import StatusBar
from tests.waits import wait_for

SIZE = (100, 32)
DEADLINE_S = 30.0  # a worker start and a 2 s reply, on a busy 2-core host
TOKENS = ["Scripted"] + [f" t{i}" for i in range(1, 40)]  # 40 tokens
DELAY_S = 0.05  # between two tokens: 20 tok/s
FIRST_S = 0.3  # from the request to the first token
SYSTEM = "Be brief."
TYPED = "Hello there"


def seconds_shown(text: str) -> float:
    """The panel's "850 ms" / "1.20 s", in seconds."""
    value, unit = text.split()
    return float(value) / (1000 if unit == "ms" else 1)


def reply_text(app) -> str:
    replies = app.query(AssistantMessage)
    return replies.last().text if replies else ""


async def test_a_typed_message_streams_the_scripted_reply_and_the_panel_shows_its_figures(scripted_model):
    path = scripted_model(TOKENS, delay_s=DELAY_S, first_s=FIRST_S)
    app = LocalLLMApp(model_path=path, sampling=SamplingParams(max_tokens=100), system_prompt=SYSTEM,
                      settings=Settings())
    began = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one("#prompt", Input)
        await wait_for(pilot, lambda: not prompt.disabled and prompt.has_focus, timeout=DEADLINE_S)
        panel = app.query_one(MetricsPanel)
        assert panel.rows["decode"] == "-" and "tokens" not in panel.rows  # nothing measured yet
        assert "script" in str(app.query_one(StatusBar).render())
        await pilot.press(*TYPED, "enter")
        live: list[bool] = []

        def streamed() -> bool:
            live.append(panel.stats is not None and panel.stats.live)
            return reply_text(app) == "".join(TOKENS)

        await wait_for(pilot, streamed, timeout=DEADLINE_S)
        assert [m.content for m in app.query(UserMessage)] == [TYPED]
        assert prompt.value == ""
        # the panel: the final figures replace the live ones once the reply is done (a panel that never
        # updates fails here, at the deadline)
        expected = f"{prompt_tokens([{'content': SYSTEM}, {'content': TYPED}])} in · {len(TOKENS)} out"
        await wait_for(pilot, lambda: panel.rows.get("tokens") == expected and not panel.stats.live,
                       timeout=DEADLINE_S)
        assert any(live)  # it showed the reply's figures while it streamed, too
        rows = panel.rows
        # tokens are stamped in the worker as the backend yields them, on the script's fixed schedule: the
        # decode rate is 1 / DELAY_S, less what a late last token on a busy host takes off
        decode = float(rows["decode"].removesuffix(" tok/s"))
        assert 0.7 / DELAY_S <= decode <= 1.1 / DELAY_S, rows
        p50 = float(rows["lat p50"].removesuffix(" ms")) / 1000
        assert 0.7 * DELAY_S <= p50 <= 1.5 * DELAY_S, rows
        assert seconds_shown(rows["TTFT"]) >= FIRST_S, rows
        assert seconds_shown(rows["wall"]) >= FIRST_S + (len(TOKENS) - 1) * DELAY_S, rows
        assert rows["load"] != "-" and rows["RSS now"].endswith("MiB")  # the worker process's memory
        assert f"{len(TOKENS)} tok" in str(app.query(AssistantMessage).last().stats.render())
        assert "ready" in str(app.query_one(StatusBar).render())
    print(f"scripted chat test: {time.perf_counter() - began:.1f} s")


def test_the_scripted_backend_is_unreachable_without_the_test_variable(tmp_path, monkeypatch) -> None:
    from localllm.backends import registry
    from localllm.config.options import BACKEND_NAMES, SCRIPTED_ENV
    from localllm.models.ref import ModelRef

    monkeypatch.delenv(SCRIPTED_ENV, raising=False)
    script = tmp_path / "reply.scripted.json"
    assert ModelRef.parse(script).backend == "llama_cpp"  # a GGUF path like any other, refused as one
    with pytest.raises(ValueError, match="unknown backend 'scripted'"):
        registry.create("scripted")
    assert "scripted" not in BACKEND_NAMES and "scripted" not in registry.BACKENDS  # settings never offer it
    monkeypatch.setenv(SCRIPTED_ENV, "1")
    assert ModelRef.parse(script).backend == "scripted"


async def test_an_empty_conversation_says_where_to_go_until_the_first_message(scripted_model):
    """A first-time user faced an empty pane; the hint names the keys for the next steps, and goes."""
    from localllm.ui.widgets.chat_log import ChatHint

    path = scripted_model(["Hi"], delay_s=0.01, first_s=0.05)
    app = LocalLLMApp(model_path=path, settings=Settings(save_conversations=False))
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one("#prompt", Input)
        await wait_for(pilot, lambda: not prompt.disabled, timeout=DEADLINE_S)
        hint = str(app.query_one(ChatHint).render())
        assert "F4" in hint and "Ctrl+O" in hint and "F1" in hint
        await pilot.press(*TYPED, "enter")
        await wait_for(pilot, lambda: reply_text(app) == "Hi", timeout=DEADLINE_S)
        assert not app.query(ChatHint)
        await pilot.press("ctrl+n")  # a new conversation: empty again, with the hint
        await wait_for(pilot, lambda: bool(app.query(ChatHint)) and not app.query(UserMessage))


@pytest.mark.parametrize("saving", [False, True], ids=["conversations-off", "saved"])
async def test_the_conversation_exports_from_the_palette_saved_or_not(scripted_model, tmp_path, monkeypatch, saving):
    """With conversations off, F3 has nothing and there was no way to keep a chat; the palette's "Export
    conversation" writes it either way."""
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "home"))
    path = scripted_model(["Paris."], delay_s=0.01, first_s=0.05)
    app = LocalLLMApp(model_path=path, settings=Settings(save_conversations=saving))
    notices: list[str] = []
    monkeypatch.setattr(app, "notify", lambda message, **kw: notices.append(str(message)))
    exports = tmp_path / "home" / "exports"  # data_dir() is LOCALLLM_HOME itself
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one("#prompt", Input)
        await wait_for(pilot, lambda: not prompt.disabled, timeout=DEADLINE_S)
        app.action_export_conversation()
        assert notices[-1].startswith("Nothing to export yet") and not exports.exists()
        await pilot.press(*"Capital of France?", "enter")
        await wait_for(pilot, lambda: reply_text(app) == "Paris." and not app.chat.generating, timeout=DEADLINE_S)
        app.action_export_conversation()
    written = list(exports.glob("*.md"))
    assert len(written) == 1 and notices[-1] == f"Exported to {written[0]}"
    text = written[0].read_text()
    assert "Capital of France?" in text and "Paris." in text
    assert written[0].name.startswith("capital-of-france")
