"""The chat's prompt: one line, as Textual's Input is, except that a pasted text of several lines is kept
whole. Input keeps a paste's first line only, so a pasted paragraph or piece of code lost the rest
without a word. Here the paste shows as a marker, "[12 pasted lines #1]", which can be typed around,
moved past or deleted like any text, and the message that is sent has the pasted text in its place.
Up and Down bring back the messages sent before, as a shell's history does."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.widgets import Input


class PromptInput(Input):
    BINDINGS = [Binding("up", "recall(-1)", "Previous message", show=False),
                Binding("down", "recall(1)", "Next message", show=False)]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pastes: dict[str, str] = {}  # marker -> the text it stands for
        self._sent: list[str] = []  # the messages sent, oldest first
        self._at = 0  # which of them is shown; len(_sent): the draft
        self._draft = ""

    def _on_paste(self, event: events.Paste) -> None:
        text = event.text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
        if "\n" not in text:
            return  # one line: Input's own handler inserts it
        marker = self._marker(text)
        if self.selection.is_empty:
            self.insert_text_at_cursor(marker)
        else:
            self.replace(marker, *self.selection)
        event.prevent_default()  # not Input's handler too
        event.stop()

    def _marker(self, text: str) -> str:
        marker = f"[{text.count(chr(10)) + 1} pasted lines #{len(self._pastes) + 1}]"
        self._pastes[marker] = text
        return marker

    def remember(self, text: str) -> None:
        """A message was sent: Up brings it back."""
        if text and (not self._sent or self._sent[-1] != text):
            self._sent.append(text)
        self._at, self._draft = len(self._sent), ""

    def action_recall(self, step: int) -> None:
        """Up (-1) and Down (1) through the messages sent; past the newest, what was being typed."""
        at = self._at + step
        if not 0 <= at <= len(self._sent):
            return
        if self._at == len(self._sent):
            self._draft = self.message  # kept while older messages are shown
        self._at = at
        text = self._sent[at] if at < len(self._sent) else self._draft
        self._pastes.clear()
        self.value = self._marker(text) if "\n" in text else text
        self.cursor_position = len(self.value)

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
