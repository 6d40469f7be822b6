"""Textual's Footer, on two rows when one row cannot hold every binding (at 80 columns it
cannot), so every action stays visible with its key."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.widgets import Footer

ONE_ROW_MIN_WIDTH = 170  # below this the app's 16 bindings overflow a single row (~167 cells)


class WrappingFooter(Footer):
    DEFAULT_CSS = """
    WrappingFooter.-two-rows { layout: grid; height: 2; grid-columns: auto; }
    WrappingFooter.-two-rows FooterKey.-command-palette { dock: none; border-left: none; padding-right: 0; }
    WrappingFooter.-two-rows FooterKey .footer-key--description { padding: 0; }
    WrappingFooter.-two-rows FooterKey .footer-key--key { padding: 0 0 0 1; }
    WrappingFooter.-two-rows FooterKey.-command-palette .footer-key--key { padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        two_rows = self.app.size.width < ONE_ROW_MIN_WIDTH
        keys = list(super().compose())
        yield from keys
        self.set_class(two_rows, "-two-rows")
        self.screen.set_class(two_rows, "-footer-two-rows")  # so widgets docked above it can move up
        if two_rows:  # Footer asked for one row of every key; ask for two rows instead
            self.styles.grid_size_columns = max(1, math.ceil(len(keys) / 2))

    async def on_resize(self) -> None:
        if self.has_class("-two-rows") != (self.app.size.width < ONE_ROW_MIN_WIDTH):
            await self.recompose()  # a coroutine: not awaited, it never ran
