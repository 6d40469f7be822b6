"""Text that comes from outside the code (file and model names, paths, what a server or a model sends,
error messages, what the user typed) is shown as it is, never read as Textual's markup: "[b]" would
vanish from a file name, and "[/b]" raises MarkupError inside a handler, which leaves a screen half
updated. Widgets that show such text take it through these; Labels built for it get markup=False."""

from __future__ import annotations

from rich.text import Text
from textual.content import Content


def plain(text: str) -> Content:
    """For Textual widgets (Label, Static, Option, Selection prompts): the characters as given."""
    return Content(text)


def cell(text: str, style: str = "") -> Text:
    """For DataTable cells and Rich tables, which read a str as Rich markup."""
    return Text(text, style=style)
