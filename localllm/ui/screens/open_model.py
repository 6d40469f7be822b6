"""Pick what to chat with: a GGUF path, a server URL, the embedded model, or a server found
running on this machine (only loopback is asked). The conversation is kept across the switch."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

EMBEDDED = ""  # the value that stands for the embedded model


class OpenModelScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="open-box"):
            yield Label("A GGUF file or a server URL (http://host:port). Enter loads, Esc cancels.")
            yield Input(placeholder="/path/to/model.gguf or http://127.0.0.1:8080 (empty: embedded)",
                        id="open-path")
            yield Label("Or pick one (servers found on this machine are listed as they answer):")
            yield OptionList(Option("The embedded model: SmolLM2-135M-Instruct (Q4_1)", id="embedded"),
                             id="open-choices")

    def on_mount(self) -> None:
        self.find_servers()

    @work(thread=True, exit_on_error=False)
    def find_servers(self) -> None:
        from localllm.endpoints import discover

        for server in discover():
            names = ", ".join(server.models[:3]) + (" …" if len(server.models) > 3 else "")
            label = f"{server.kind} at {server.url} ({len(server.models)} models: {names})"
            self.app.call_from_thread(self._add_choice, label, server.url)

    def _add_choice(self, label: str, url: str) -> None:
        self.query_one(OptionList).add_option(Option(label, id=url))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(EMBEDDED if event.option.id == "embedded" else event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
