"""Shows the model worker's log (llama.cpp's own output goes there, not onto the screen)."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Log

from localllm.config import read_tail


class LogScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="log-box"):
            yield Label(f"Worker log: {self.path or '(no worker started yet)'} · Esc closes", markup=False)
            yield Log(id="log-view", highlight=False)

    def on_mount(self) -> None:
        log = self.query_one(Log)
        if self.path is None:
            return
        try:
            text = read_tail(self.path)  # the last 256 KiB: a long session's log is many MB
        except OSError as exc:
            text = f"cannot read the log: {exc}"
        log.write(text or "(the log is empty: the worker printed nothing)")
