"""An app that shows one screen, for the tests that drive a screen alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.screen import Screen


class ScreenHost(App):
    """Pushes `screen` at start; `on_dismiss` gets what the screen dismisses with."""

    def __init__(self, screen: Screen, on_dismiss: Callable[[Any], None] | None = None) -> None:
        super().__init__()
        self._first, self._on_dismiss = screen, on_dismiss

    def on_mount(self) -> None:
        self.push_screen(self._first, self._on_dismiss)
