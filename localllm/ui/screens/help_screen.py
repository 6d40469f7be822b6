"""The key bindings, as (key, description) pairs given by the caller; any of Esc, q, ? or F1 closes it."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label

from localllm.ui.plain import cell


def app_bindings(app: App) -> list[tuple[str, str]]:
    """The bindings the footer shows now (those with show=True), keys written as it writes them."""
    pairs: dict[str, str] = {}
    for active in app.active_bindings.values():
        if active.binding.show and active.binding.description:
            pairs.setdefault(app.get_key_display(active.binding), active.binding.description)
    return list(pairs.items())


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", show=False),
        Binding("question_mark", "close", show=False),
        Binding("f1", "close", show=False),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help-box { width: 72; max-width: 100%; height: auto; max-height: 100%; border: round $primary;
                background: $surface; padding: 0 1; }
    #help-title { text-style: bold; }
    #help-table { height: auto; max-height: 18; }
    #help-hint { width: 1fr; color: $text-muted; }
    """

    def __init__(self, bindings: Iterable[tuple[str, str]], title: str = "Keys",
                 hint: str = "Ctrl+P opens the command palette: every action is there too. Esc closes.") -> None:
        super().__init__()
        self.pairs = list(bindings)
        self.title_text = title
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label(self.title_text, id="help-title")
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True, show_header=False)
            yield Label(self.hint, id="help-hint")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Key", "Action")
        for key, description in self.pairs:
            table.add_row(cell(key), cell(description))
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
