"""Text from outside the code is shown as it is, never read as markup (localllm.ui.plain): a model file
named with brackets, a message the user typed and a reply with markup-like text, a saved conversation's
title, a typed path in the timing runs, a server's model id and a notification. Before, "[bold]" vanished
from names, and a closing tag such as "[/b]" raised MarkupError inside the handler (the history screen, the
timing run's list and the models screen broke on it)."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Label, OptionList, SelectionList
from textual.widgets._toast import Toast

from localllm.config import SamplingParams
from localllm.config.settings import Settings
from localllm.ui.app import LocalLLMApp
from localllm.ui.screens.bench_screen import BenchScreen
from localllm.ui.screens.conversations_screen import ConversationsScreen
from localllm.ui.screens.open_model import OpenModelScreen
from localllm.ui.widgets.chat_log import AssistantMessage
from localllm.ui.widgets.status_bar import StatusBar
from tests import sse_server
from tests.sse_server import SseServer
from tests.ui.hosts import ScreenHost
from tests.waits import wait_for

SIZE = (110, 32)
DEADLINE_S = 30.0  # a worker start on a busy 2-core host
TYPED = "[/b] what is list[int]? [bold]"
REPLY = ["It", " is", " [/red]", " a", " [b]list[/b]"]
ODD = "x[/i] [dim]odd"


def options(widget: OptionList) -> list[str]:
    return [str(widget.get_option_at_index(i).prompt) for i in range(widget.option_count)]


async def test_names_messages_titles_and_notices_keep_their_brackets(scripted_model, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "home"))
    path = scripted_model(REPLY, delay_s=0.01, name="tiny[bold]")
    app = LocalLLMApp(model_path=path, sampling=SamplingParams(max_tokens=20), settings=Settings())
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        prompt = app.query_one("#prompt", Input)
        await wait_for(pilot, lambda: not prompt.disabled and prompt.has_focus, timeout=DEADLINE_S)
        assert "tiny[bold]" in str(app.query_one(StatusBar).render())
        prompt.value = TYPED
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating, timeout=DEADLINE_S)
        assert app.query(AssistantMessage).last().text == "".join(REPLY)

        app.notify(f"Cannot read {ODD}")
        await wait_for(pilot, lambda: any(ODD in str(t.render()) for t in app.screen.query(Toast)))

        await pilot.press("f3")  # the history: the conversation's title is the typed message
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert str(table.get_cell_at((0, 0))).startswith("[/b] what is list[int]?")


async def test_a_typed_path_in_the_timing_runs_is_listed_as_typed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    screen = BenchScreen()
    async with ScreenHost(screen).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.is_mounted)
        typed = screen.query_one("#bench-add", Input)
        typed.focus()
        typed.value = f"/models/{ODD}.gguf"
        await pilot.press("enter")
        await wait_for(pilot, lambda: typed.value == "")
        assert f"/models/{ODD}.gguf · typed" in options(screen.query_one("#bench-models", SelectionList))


async def test_a_servers_model_id_and_the_pull_hint_are_shown_as_sent(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    monkeypatch.setattr(sse_server, "MODEL", f"org/{ODD}")  # what GET /v1/models answers
    with SseServer() as server:
        screen = OpenModelScreen(endpoints=[server.url])
        async with ScreenHost(screen).run_test(size=SIZE) as pilot:
            choices = screen.query_one("#open-choices", OptionList)
            await wait_for(pilot, lambda: any(f"org/{ODD}" in o for o in options(choices)))
            hints = [str(label.render()) for label in screen.query(Label)]
            assert any("REPO [QUANT]" in h for h in hints)


async def test_a_library_file_with_brackets_is_offered_to_quantize_by_its_name(tmp_path, monkeypatch) -> None:
    from textual.widgets import Select

    from localllm.ui.screens.quantize_screen import QuantizeScreen

    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    screen = QuantizeScreen(sources=[(f"{ODD} · gguf Q4_1", str(tmp_path / "odd.gguf"))])
    async with ScreenHost(screen).run_test(size=SIZE) as pilot:
        select = screen.query_one("#q-source", Select)
        await wait_for(pilot, lambda: select.value == str(tmp_path / "odd.gguf"))
        await pilot.pause()
        assert f"{ODD} · gguf Q4_1" in str(select.query_one("SelectCurrent #label").render())
