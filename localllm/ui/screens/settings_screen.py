"""Edit the settings: one compact row per setting, checked with settings.py's messages on save.

Dismisses with the new Settings (not yet saved to disk: the caller saves and applies them) or None."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import DescendantFocus
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Footer, Input, Label, Select, Static, Switch
from textual.widgets._input import InputType

from localllm.config.settings import (
    FIELDS,
    TYPES,
    Settings,
    SettingsError,
    allowed,
    check_value,
    parse_field,
    shown_value,
)

LABELS = {
    "model": "Model", "context": "Context", "threads": "Threads",
    "gpu_layers": "GPU layers", "extra_buffers": "CPU extra bufs", "kv_type": "KV cache",
    "system_prompt": "System prompt", "temperature": "Temperature",
    "top_p": "Top-p", "top_k": "Top-k", "min_p": "Min-p", "repeat_penalty": "Repeat penalty",
    "max_tokens": "Max tokens", "seed": "Seed", "theme": "Theme", "save_conversations": "Save chats",
    "endpoints": "Servers", "model_folders": "Model folders",
    "api_key_env": "API key var",
}
assert set(LABELS) == set(FIELDS)  # a new setting needs a label here


class SettingsScreen(ModalScreen[Settings | None]):
    """A form over Settings; picking a theme previews it, Esc puts the old one back."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]
    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    #settings-box { width: 100; max-width: 100%; height: auto; max-height: 100%; border: round $primary;
                    background: $surface; padding: 0 1; }
    #settings-title { text-style: bold; width: 1fr; }
    #settings-form { height: auto; max-height: 15; }  /* the whole box fits 80x24 above the footer */
    .setting-row { height: 1; }
    .setting-label { width: 16; color: $text-muted; }
    .setting-row > Input, .setting-row > Select { width: 1fr; }
    .setting-row > Switch { border: none; padding: 0; height: 1; width: 8; }
    .setting-row > Input.-rejected { background: $error 25%; }
    #settings-help { height: 2; color: $text-muted; margin-top: 1; }
    #settings-errors { height: auto; max-height: 4; color: $error; }
    #settings-buttons { height: 1; align-horizontal: right; }
    #settings-buttons Button { margin-left: 2; }
    """

    def __init__(self, settings: Settings, themes: Iterable[str] = (),
                 model_sampling: dict[str, dict[str, Any]] | None = None) -> None:
        """`model_sampling`: the loaded model's sampling with each value's source (ResolvedSampling.to_dict)."""
        super().__init__()
        self.settings = settings
        self.model_sampling = model_sampling or {}
        self._themes = list(themes)
        self._theme_before: str | None = None

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical(id="settings-box"):
            yield Label("Settings · Ctrl+S saves, Esc cancels", id="settings-title")
            with VerticalScroll(id="settings-form"):
                for key in FIELDS:
                    with Horizontal(classes="setting-row"):
                        yield Label(LABELS[key], classes="setting-label")
                        yield self._editor(key)
            yield Static("", id="settings-help", markup=False)
            yield Static("", id="settings-errors", markup=False)
            with Horizontal(id="settings-buttons"):
                yield Button("Save", id="settings-save", variant="primary", compact=True)
                yield Button("Cancel", id="settings-cancel", compact=True)
        yield Footer()

    def _editor(self, key: str) -> Widget:
        value = getattr(self.settings, key)
        wid = f"setting-{key}"
        if key == "theme":
            names = sorted(set(self._themes or self.app.available_themes) | {value})
            return Select([(n, n) for n in names], value=value, allow_blank=False, compact=True, id=wid)
        if TYPES[key] is bool:
            return Switch(value=value, id=wid)
        kinds: dict[type, InputType] = {int: "integer", float: "number"}
        kind = "text" if FIELDS[key].metadata.get("words") else kinds.get(TYPES[key], "text")  # auto, random
        text = shown_value(key, value)
        return Input(text, type=kind, compact=True, id=wid, select_on_focus=False)

    def on_mount(self) -> None:
        self._theme_before = self.app.theme
        self.query_one("#setting-model").focus()

    # -- help and preview ----------------------------------------------------------------------
    def on_descendant_focus(self, event: DescendantFocus) -> None:
        key = (event.widget.id or "").removeprefix("setting-")
        if key in FIELDS:
            chosen = self.model_sampling.get(key)
            uses = f" The loaded model uses {chosen['value']} (from {chosen['from']})." if chosen else ""
            self.query_one("#settings-help", Static).update(
                f"{LABELS[key]}: {FIELDS[key].metadata['doc']} ({allowed(key)}).{uses}")

    @on(Select.Changed, "#setting-theme")
    def preview_theme(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value in self.app.available_themes:
            self.app.theme = event.value

    @on(Input.Changed)
    def clear_mark(self, event: Input.Changed) -> None:
        event.input.remove_class("-rejected")

    # -- save / cancel -------------------------------------------------------------------------
    def collect(self) -> tuple[Settings | None, list[tuple[str, str]]]:
        """The form's values as Settings, or None and (key, message) for each invalid field."""
        values: dict = {}
        errors: list[tuple[str, str]] = []
        for key in FIELDS:
            widget = self.query_one(f"#setting-{key}")
            try:
                if isinstance(widget, Input):
                    values[key] = parse_field(key, widget.value)
                else:
                    values[key] = check_value(key, cast("Select[str] | Switch", widget).value)
            except SettingsError as exc:
                errors.append((key, str(exc)))
        # the per-model tables are not on the form: kept as they were
        return (None if errors else Settings(**values, models=dict(self.settings.models))), errors

    @on(Button.Pressed, "#settings-save")
    @on(Input.Submitted)
    def action_save(self) -> None:
        settings, errors = self.collect()
        for widget in self.query(".setting-row > Input"):
            widget.set_class(any(widget.id == f"setting-{key}" for key, _ in errors), "-rejected")
        self.query_one("#settings-errors", Static).update("\n".join(message for _, message in errors))
        if settings is None:
            self.query_one(f"#setting-{errors[0][0]}").focus()
            return
        self.dismiss(settings)

    @on(Button.Pressed, "#settings-cancel")
    def action_cancel(self) -> None:
        if self._theme_before is not None and self.app.theme != self._theme_before:
            self.app.theme = self._theme_before  # undo the preview
        self.dismiss(None)
