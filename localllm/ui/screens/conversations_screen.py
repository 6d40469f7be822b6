"""Saved conversations: open, rename, delete, export to Markdown or JSON.

Dismisses with the id of the conversation to open, or None."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, Static

from localllm.chat.conversation_export import export_filename, model_label
from localllm.chat.conversations import ConversationStore
from localllm.config import data_dir
from localllm.errors import LocalLLMError
from localllm.ui.plain import cell


def local_time(stamp: str) -> str:
    """'11-23 09:41' in local time from a stored UTC stamp; minutes are enough in a list."""
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%m-%d %H:%M")
    except ValueError:
        return stamp[:16]


class ConversationsScreen(ModalScreen[int | None]):
    """A table of conversations, newest first; exports go to `export_dir` (default: data/exports)."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("enter", "open", "Open", show=True),
        Binding("r", "rename", "Rename"),
        Binding("d", "delete", "Delete"),
        Binding("m", "export('.md')", "Export .md"),
        Binding("j", "export('.json')", "Export .json"),
    ]
    DEFAULT_CSS = """
    ConversationsScreen { align: center middle; }
    #conv-box { width: 110; max-width: 100%; height: 100%; max-height: 40; border: round $primary;
                background: $surface; padding: 0 1; }
    #conv-title { text-style: bold; }
    #conv-table { height: 1fr; }
    #conv-rename { display: none; }
    #conv-rename.-editing { display: block; }
    #conv-status { height: auto; max-height: 3; color: $text-muted; }
    #conv-status.-alert { color: $warning; }
    """

    def __init__(self, store: ConversationStore, export_dir: Path | None = None) -> None:
        super().__init__()
        self.store = store
        self.export_dir = export_dir or data_dir() / "exports"
        self._pending_delete: int | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="conv-box"):
            yield Label("Saved conversations", id="conv-title")
            yield DataTable(id="conv-table", cursor_type="row", zebra_stripes=True)
            yield Input(placeholder="New title, Enter to rename, Esc to cancel", id="conv-rename", compact=True)
            yield Static("", id="conv-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # Fixed widths, the title taking what is left: no sideways scrolling, even at 80 columns.
        inner = min(110, self.size.width) - 4 - 2 - 2 * 4  # border+padding, scrollbar, cell padding
        table.add_column("Title", key="title", width=max(16, inner - 4 - 22 - 11))
        table.add_column("Msgs", key="n", width=4)
        table.add_column("Model", key="model", width=22)
        table.add_column("Updated", key="updated", width=11)
        self.refresh_table()
        table.focus()

    def refresh_table(self, keep: int | None = None) -> None:
        """Reload from the database; the cursor stays on `keep` when it is still there."""
        table = self.query_one(DataTable)
        table.clear()
        try:
            conversations = self.store.list()
        except LocalLLMError as exc:
            self.say(f"Failed: {exc}", alert=True)
            return
        for c in conversations:
            model = model_label(c.model) if c.model else "-"
            updated = local_time(c.updated)
            table.add_row(cell(c.title or "(untitled)"), str(c.message_count), cell(model), updated, key=str(c.id))
        if table.row_count == 0:
            self.say("No saved conversations yet.")
        elif keep is not None and str(keep) in table.rows:
            table.move_cursor(row=table.get_row_index(str(keep)))

    @property
    def current(self) -> int | None:
        """The id of the highlighted conversation."""
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return int(row_key.value) if row_key.value is not None else None

    def say(self, text: str, alert: bool = False) -> None:
        status = self.query_one("#conv-status", Static)
        status.update(text)
        status.set_class(alert, "-alert")

    # -- actions -------------------------------------------------------------------------------
    @on(DataTable.RowSelected)
    def action_open(self) -> None:
        if self.query_one("#conv-rename", Input).has_focus:
            return  # Enter belongs to the rename box
        if self.current is not None:
            self.dismiss(self.current)

    def action_close(self) -> None:
        rename = self.query_one("#conv-rename", Input)
        if rename.has_class("-editing"):
            self._end_rename()
            return
        self.dismiss(None)

    def action_rename(self) -> None:
        cid = self.current
        if cid is None:
            return
        rename = self.query_one("#conv-rename", Input)
        if not self._try(lambda: setattr(rename, "value", self.store.load(cid).title)):
            return
        rename.add_class("-editing")
        rename.focus()

    @on(Input.Submitted, "#conv-rename")
    def do_rename(self, event: Input.Submitted) -> None:
        event.stop()
        cid = self.current
        if cid is not None and event.value.strip():
            self._try(lambda: self.store.rename(cid, event.value))
            self.say(f"Renamed to {event.value.strip()!r}.")
        self._end_rename()
        self.refresh_table(keep=cid)

    def _end_rename(self) -> None:
        self.query_one("#conv-rename", Input).remove_class("-editing")
        self.query_one(DataTable).focus()

    def action_delete(self) -> None:
        """The first d asks, a second d on the same row deletes."""
        cid = self.current
        if cid is None:
            return
        if self._pending_delete != cid:
            self._pending_delete = cid
            self.say("Press d again to delete this conversation (it cannot be undone).", alert=True)
            return
        self._pending_delete = None
        if self._try(lambda: self.store.delete(cid)):
            self.say("Deleted.")
        self.refresh_table()

    @on(DataTable.RowHighlighted)
    def _forget_pending(self) -> None:
        if self._pending_delete is not None and self._pending_delete != self.current:
            self._pending_delete = None
            self.say("")

    def action_export(self, suffix: str) -> None:
        cid = self.current
        if cid is None:
            return
        try:
            summary = next((c for c in self.store.list() if c.id == cid), None)
        except LocalLLMError as exc:
            self.say(f"Failed: {exc}", alert=True)
            return
        if summary is None:
            return
        path = self.export_dir / export_filename(summary, suffix)
        if self._try(lambda: self.store.export_to_file(cid, path)):
            self.say(f"Exported to {path}")

    def _try(self, action) -> bool:
        """Run a store action; a failure is shown here instead of closing the screen."""
        try:
            action()
        except (LocalLLMError, OSError) as exc:
            self.say(f"Failed: {exc}", alert=True)
            return False
        return True
