"""The chat's prompt: one line, as Textual's Input is, except that a pasted text of several lines is kept
whole. Input keeps a paste's first line only, so a pasted paragraph or piece of code lost the rest
without a word. Here the paste shows as a marker, "[12 pasted lines #1]", which can be typed around,
moved past or deleted like any text, and the message that is sent has the pasted text in its place."""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class PromptInput(Input):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pastes: dict[str, str] = {}  # marker -> the text it stands for

    def _on_paste(self, event: events.Paste) -> None:
        text = event.text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
        if "\n" not in text:
            return  # one line: Input's own handler inserts it
        marker = f"[{text.count(chr(10)) + 1} pasted lines #{len(self._pastes) + 1}]"
        self._pastes[marker] = text
        if self.selection.is_empty:
            self.insert_text_at_cursor(marker)
        else:
            self.replace(marker, *self.selection)
        event.prevent_default()  # not Input's handler too
        event.stop()

    @property
    def message(self) -> str:
        """What sending now would send: the value with each marker still in it replaced by its text."""
        text = self.value
        for marker, pasted in self._pastes.items():
            text = text.replace(marker, pasted)
        return text

    def clear(self) -> None:
        self.value = ""
        self._pastes.clear()
