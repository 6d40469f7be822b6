"""A text of several lines pasted into the chat's prompt is sent whole (PromptInput): Textual's Input
kept the first line only, so the rest of a pasted paragraph or piece of code was lost without a word.
Up and Down bring back what was sent."""

from __future__ import annotations

from textual import events

from localllm.config import SamplingParams
from localllm.config.settings import Settings
from localllm.ui.app import LocalLLMApp
from localllm.ui.widgets.chat_log import UserMessage
from localllm.ui.widgets.prompt_input import PromptInput
from tests.waits import wait_for

DEADLINE_S = 30.0  # a worker start on a busy 2-core host
CODE = "def add(a, b):\r\n    return a + b\r\n\r\nprint(add(1, 2))\n"


async def test_a_pasted_block_is_sent_whole_and_a_pasted_line_as_typed(scripted_model) -> None:
    app = LocalLLMApp(model_path=scripted_model(["Fine."], delay_s=0.0), sampling=SamplingParams(max_tokens=8),
                      settings=Settings(save_conversations=False))
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = app.query_one("#prompt", PromptInput)
        await wait_for(pilot, lambda: not prompt.disabled and prompt.has_focus, timeout=DEADLINE_S)
        await pilot.press(*"Explain ")
        prompt.post_message(events.Paste(CODE))
        await pilot.pause()
        assert prompt.value == "Explain [4 pasted lines #1]"  # shown as a marker: the prompt is one line
        await pilot.press(*" and ")
        prompt.post_message(events.Paste("this line"))  # one line: inserted as it is
        await pilot.pause()
        assert prompt.value == "Explain [4 pasted lines #1] and this line"
        assert app.chat.draft.startswith("Explain def add(a, b):\n")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating, timeout=DEADLINE_S)
        sent = "Explain def add(a, b):\n    return a + b\n\nprint(add(1, 2)) and this line"
        assert app.session.history[0].content == sent
        assert [m.content for m in app.query(UserMessage)] == [sent] and prompt.value == ""
        # Up brings the sent message back (a block again as its marker), Down the draft being typed
        await pilot.press("x", "up")
        assert prompt.value == "[4 pasted lines #1]" and prompt.message == sent
        await pilot.press("up")  # nothing older: stays
        assert prompt.message == sent
        await pilot.press("down")
        assert prompt.value == "x"
        await pilot.press("up", "enter")
        await wait_for(pilot, lambda: len(app.session.history) == 4 and not app.generating, timeout=DEADLINE_S)
        assert app.session.history[2].content == sent


async def test_a_reopened_conversations_messages_come_back_with_up(scripted_model, tmp_path, monkeypatch) -> None:
    from localllm.ui.screens.conversations_screen import ConversationsScreen

    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    path = scripted_model(["Fine."], delay_s=0.0)
    first = LocalLLMApp(model_path=path, sampling=SamplingParams(max_tokens=8), settings=Settings())
    async with first.run_test(size=(100, 30)) as pilot:
        prompt = first.query_one("#prompt", PromptInput)
        await wait_for(pilot, lambda: not prompt.disabled and prompt.has_focus, timeout=DEADLINE_S)
        await pilot.press(*"alpha", "enter")
        await wait_for(pilot, lambda: len(first.session.history) == 2 and not first.generating, timeout=DEADLINE_S)
    later = LocalLLMApp(model_path=path, sampling=SamplingParams(max_tokens=8), settings=Settings())
    async with later.run_test(size=(100, 30)) as pilot:
        prompt = later.query_one("#prompt", PromptInput)
        await wait_for(pilot, lambda: not prompt.disabled and prompt.has_focus, timeout=DEADLINE_S)
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(later.screen, ConversationsScreen))
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(later.query(UserMessage)) == 1)
        prompt.focus()
        await pilot.press("up")
        assert prompt.value == "alpha"
