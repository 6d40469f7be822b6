"""Compare (Ctrl+E) in the real TUI: the prompt being typed goes to the embedded model and a Q8_0 made
from it, one after the other, in columns with each one's figures; the comparison is saved with the
conversation; Esc cancels a run and goes back."""

from __future__ import annotations

import time

import pytest
from textual.command import CommandPalette
from textual.widgets import Input, OptionList

from localllm.config import LoadOptions, SamplingParams
from localllm.config.settings import Settings
from localllm.quantize.gguf import requantize_gguf
from localllm.ui.app import LocalLLMApp
from localllm.ui.screens.compare_screen import CompareScreen
from localllm.ui.widgets.chat_log import AssistantMessage
from localllm.ui.widgets.compare_columns import CompareColumn
from tests.unit.test_compare import workers_alive
from tests.waits import wait_for

pytestmark = pytest.mark.slow  # real model workers: not in the quick tier

SIZE = (100, 32)
OPTIONS = LoadOptions(context=512, threads=1)  # one thread: llama.cpp's pool crawls on a busy 2-core CPU


@pytest.fixture(scope="module")
def q8(model_path, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("compare-ui") / "SmolLM2-135M-Instruct.Q8_0.gguf"
    return requantize_gguf(model_path, out, "Q8_0").path


async def open_compare(pilot, app, prompt: str) -> CompareScreen:
    box = app.query_one("#prompt", Input)
    box.value = prompt
    box.focus()
    await pilot.press("ctrl+e")
    await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
    screen = app.screen
    await wait_for(pilot, lambda: screen.library_done)  # the library's GGUFs are offered by now
    return screen



def _first_command(app) -> str:
    """The palette's first match for what was typed, once it lists one."""
    lists = app.screen.query(OptionList)
    if not lists or not lists.first().option_count:
        return ""
    return str(lists.first().get_option_at_index(0).prompt)

async def test_ctrl_e_compares_the_typed_prompt_on_two_models_and_saves_it(q8, tmp_path) -> None:
    started = time.time() - 1
    app = LocalLLMApp(sampling=SamplingParams(max_tokens=16, ignore_eos=True, seed=1), load_options=OPTIONS)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        app.query_one("#prompt", Input).value = "Hi"  # a conversation first: the comparison joins it
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating)
        screen = await open_compare(pilot, app, "Name a colour.")
        assert screen.query_one("#compare-prompt", Input).value == "Name a colour."
        specs = screen.query_one("#compare-specs", Input)
        assert specs.value.split(",")[0] == "embedded"  # the loaded model comes first
        await pilot.press("ctrl+e")  # here ctrl+e is the Input's again: no second compare screen
        assert app.screen is screen and len(app.screen_stack) == 2
        specs.value = f"embedded, {q8}"
        specs.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.running)
        await wait_for(pilot, lambda: not screen.running, timeout=300)
        first, second = screen.columns
        assert isinstance(first, CompareColumn) and (first.spec, second.spec) == ("embedded", q8)
        for col, quant in ((first, "Q4_1"), (second, "Q8_0")):
            assert col.quant == quant and col.status == "length" and col.text and not col.error
            rate, unit = col.figures["decode"].split()
            assert float(rate) > 0 and unit == "tok/s"
            assert col.figures["TTFT"] != "-" and col.figures["peak RSS"].endswith("MiB")
            assert col.figures["tokens"].endswith("16 out")
            # against the memory-bandwidth roofline where this machine's bandwidth is known; '-' keeps the rows level
            assert col.figures["BW limit"] == (f"{col.stats.percent_of_limit:.0f}% of {col.stats.limit_tok_s:.0f} tok/s"
                                               if col.stats.limit_tok_s else "-")
            head = str(col.query_one(".col-head").render())
            assert quant in head and "SmolLM2" in head
            assert col.text in str(col.query_one(".col-text").render())
        assert first.stats is not second.stats and first.stats.decode_tok_s != second.stats.decode_tok_s
        assert screen.saved and "Saved with the conversation" in str(screen.query_one("#compare-status").render())
        # saved with the current conversation; the chat itself did not change
        conv = app.recorder.store.load(app.recorder.conversation_id)
        assert [t.content for t in conv.turns][:1] == ["Hi"] and len(conv.turns) == 2
        saved = conv.comparisons[-1]
        assert saved.prompt == "Name a colour." and saved.after_seq == 2
        assert [r["spec"] for r in saved.results] == ["embedded", q8]
        assert [r["text"] for r in saved.results] == [first.text, second.text]
        assert all(r["stats"]["decode_tok_s"] > 0 for r in saved.results)
        assert "## Comparison · 2 models" in app.recorder.store.export_markdown(conv.id)
        assert len(app.session.history) == 2 and len(app.query(AssistantMessage)) == 1
        assert [p.pid for p in workers_alive(started)] == [app.session.worker_pid]  # the compared ones are closed
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen))
        assert app.query_one("#prompt", Input).value == "Name a colour."  # still there to send
        # the history screen lists it and exports it with the comparison (F3, m)
        from localllm.ui.screens.conversations_screen import ConversationsScreen

        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
        history = app.screen
        history.export_dir = tmp_path
        await wait_for(pilot, lambda: history.current is not None)
        assert history.current == conv.id  # the newest: the comparison updated it
        await pilot.press("m")
        await wait_for(pilot, lambda: any(tmp_path.glob("*.md")))
        exported = next(tmp_path.glob("*.md")).read_text()
        assert "## User\n\nHi" in exported and "## Comparison · 2 models" in exported
        assert "> Name a colour." in exported and exported.count("decode ") >= 3  # the chat's reply, both models


async def test_a_bad_model_is_an_error_in_its_column_and_escape_cancels_a_run(tmp_path) -> None:
    started = time.time() - 1
    app = LocalLLMApp(sampling=SamplingParams(max_tokens=2000, ignore_eos=True, seed=1), load_options=OPTIONS,
                      settings=Settings(save_conversations=True))  # a comparison would be saved
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        screen = await open_compare(pilot, app, "Write an endless story.")
        missing = tmp_path / "missing.gguf"
        screen.query_one("#compare-specs", Input).value = f"{missing}, embedded, embedded"
        await pilot.click("#compare-run")
        first, second, third = screen.columns
        await wait_for(pilot, lambda: first.status == "error" and second.text, timeout=120)
        assert "missing.gguf" in first.error and first.figures["decode"] == "-"
        assert "missing.gguf" in str(first.query_one(".col-text").render())
        await pilot.press("escape")  # the second model is writing: it stops, the third never starts
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen))
        await wait_for(pilot, lambda: screen.idle.is_set(), timeout=60)
        # a cancelled run is not kept: nothing was said in this chat, so a saved comparison would have
        # opened a conversation of its own (chat.compare.save_comparison); none was
        assert app.recorder.store is not None and app.recorder.conversation_id is None
        assert [p.pid for p in workers_alive(started)] == [app.session.worker_pid]
        # the chat goes on as before
        app.session.sampling = SamplingParams(max_tokens=4, ignore_eos=True)
        app.query_one("#prompt", Input).value = "Thanks"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating)
        assert app.session.history[-1].stats.completion_tokens == 4


async def test_the_palette_opens_compare_and_a_lone_model_is_refused() -> None:
    app = LocalLLMApp(load_options=OPTIONS)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        commands = {c.title for c in app.get_system_commands(app.screen)}
        assert "Compare models" in commands
        app.query_one("#prompt", Input).value = "Hello"
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Compare models")
        await wait_for(pilot, lambda: _first_command(app).startswith("Compare models"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.library_done)
        screen.query_one("#compare-specs", Input).value = "embedded"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "two or more" in str(screen.query_one("#compare-status").render()))
        assert not screen.running
        screen.query_one("#compare-prompt", Input).value = ""
        screen.query_one("#compare-specs", Input).value = "embedded, embedded"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "prompt" in str(screen.query_one("#compare-status").render()))
        assert not screen.running
