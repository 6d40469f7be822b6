"""Compare (Ctrl+E on the chat screen): the prompt being typed, sent to two or more models one after
another, the replies and their figures side by side, one column per model. The models run through
localllm.chat.compare.run_comparison in a thread worker; its events come back as messages. When a run
finishes it is saved with the current conversation. Esc cancels a run and goes back."""

from __future__ import annotations

import threading
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from localllm.chat.compare import (
    CompareEvent,
    CompareResult,
    Comparison,
    ModelDelta,
    ModelDone,
    ModelReady,
    ModelStarting,
    default_specs,
    loaded_spec,
    parse_specs,
    run_comparison,
    save_comparison,
)
from localllm.chat.session import ChatSession
from localllm.config import LoadOptions
from localllm.ui.widgets.compare_columns import CompareColumn, CompareColumns, column_widths

FLUSH_S = 0.25  # streamed text reaches the columns at most this often: a repaint is decode time lost


class CompareScreen(ModalScreen[None]):
    """`prompt`: the chat's input text; `session`: the chat's (its system prompt, sampling and loaded
    model are the defaults; the conversation is not sent); `recorder`: where the result is saved."""

    BINDINGS = [
        Binding("escape", "close", "Back / cancel run"),
        Binding("ctrl+r", "run", "Run"),
    ]
    DEFAULT_CSS = """
    CompareScreen { background: $background; layout: vertical; }
    .compare-row { height: 1; }
    .compare-row > Label { width: 9; color: $text-muted; }
    .compare-row > Input { width: 1fr; }
    #compare-run { width: 9; min-width: 7; margin-left: 1; }
    #compare-status { height: auto; max-height: 2; color: $text-muted; padding: 0 1; }
    #compare-status.-alert { color: $warning; }
    #compare-columns { height: 1fr; }
    CompareColumn { width: 32; height: 1fr; border: round $primary; padding: 0 1; }
    CompareColumn.-error { border: round $error; }
    CompareColumn.-warn { border: round $warning; }
    CompareColumn .col-head { height: 2; text-wrap: nowrap; text-overflow: ellipsis; }
    CompareColumn .col-reply { height: 1fr; scrollbar-size-vertical: 1; }
    CompareColumn .col-figures { height: 9; border-top: solid $primary-darken-2; text-wrap: nowrap;
                                 text-overflow: ellipsis; }
    """

    class Started(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    class Ready(Message):
        def __init__(self, index: int, name: str, quant: str) -> None:
            super().__init__()
            self.index, self.name, self.quant = index, name, quant

    class Delta(Message):
        def __init__(self, index: int, text: str) -> None:
            super().__init__()
            self.index, self.text = index, text

    class Done(Message):
        def __init__(self, index: int, result: CompareResult) -> None:
            super().__init__()
            self.index, self.result = index, result

    class Finished(Message):
        def __init__(self, comparison: Comparison | None, warning: str | None) -> None:
            super().__init__()
            self.comparison, self.warning = comparison, warning

    def __init__(self, prompt: str, session: ChatSession, recorder=None,
                 load_options: LoadOptions | None = None) -> None:
        super().__init__()
        self.prompt = prompt
        self.session = session
        self.recorder = recorder
        self.load_options = load_options
        self.comparison: Comparison | None = None  # the last finished run
        self.saved: bool = False  # the last run was saved with the conversation
        self.running = False
        self.library_done = False  # the library's GGUFs were offered (tests wait for it)
        self._cancel: threading.Event | None = None
        self.idle = threading.Event()  # no run in flight: its models' workers are closed
        self.idle.set()
        self._first_specs = loaded_spec(session) or ""
        self._status = ("", False)
        self._scroll_hint = ""  # said when the columns do not all fit the width

    def compose(self) -> ComposeResult:
        with Horizontal(classes="compare-row"):
            yield Label("Prompt")
            yield Input(self.prompt, placeholder="the prompt every model answers", id="compare-prompt",
                        compact=True)
        with Horizontal(classes="compare-row"):
            yield Label("Models")
            yield Input(self._first_specs, id="compare-specs", compact=True,
                        placeholder="embedded, a GGUF path, FOLDER@nf4, URL#id: comma-separated")
            yield Button("Run", id="compare-run", variant="primary", compact=True)
        yield Static(id="compare-status", markup=False)
        yield CompareColumns(id="compare-columns")
        yield Footer()

    def on_mount(self) -> None:
        for box in self.query(Input):
            box.cursor_blink = False  # a blink is a repaint, and repaints are decode time here
        self.query_one("#compare-specs", Input).focus()
        self.say("Models run one after another, each alone. Enter or Run starts; Esc goes back.")
        self.offer_library()

    @work(thread=True, exit_on_error=False, group="compare-library")
    def offer_library(self) -> None:
        """The loaded model and up to two other GGUFs of the library (an HF cache scan: off the UI)."""
        specs: list[str] = []
        try:
            specs = default_specs(self.session)
        finally:
            self.app.call_from_thread(self._offer, specs)

    def _offer(self, specs: list[str]) -> None:
        self.library_done = True
        try:
            box = self.query_one("#compare-specs", Input)
        except NoMatches:  # the screen was closed meanwhile
            return
        if specs and box.value == self._first_specs and not self.running:  # not typed over meanwhile
            box.value = ", ".join(specs)
            box.cursor_position = len(box.value)

    # -- running -------------------------------------------------------------------------------
    def say(self, text: str, alert: bool = False) -> None:
        self._status = (text, alert)
        self._show_status()

    def _show_status(self) -> None:
        text, alert = self._status
        status = self.query_one("#compare-status", Static)
        status.update(text + self._scroll_hint)
        status.set_class(alert, "-alert")

    @on(Input.Submitted)
    @on(Button.Pressed, "#compare-run")
    async def action_run(self) -> None:
        if self.running:
            return
        prompt = self.query_one("#compare-prompt", Input).value.strip()
        specs = parse_specs(self.query_one("#compare-specs", Input).value)
        if not prompt:
            self.say("Type the prompt to compare first.", alert=True)
            self.query_one("#compare-prompt", Input).focus()
            return
        if len(specs) < 2:
            self.say("Give two or more models, separated by commas (the same one twice shows run-to-run "
                     "spread).", alert=True)
            self.query_one("#compare-specs", Input).focus()
            return
        await self._build_columns(specs)
        self.running, self.saved, self.comparison = True, False, None
        self.query_one("#compare-run", Button).disabled = True
        self._cancel = threading.Event()
        self.idle.clear()
        self.say(f"Running {len(specs)} models one after another… Esc cancels.")
        self.compare(prompt, specs, self._cancel)

    async def _build_columns(self, specs: list[str]) -> None:
        box = self.query_one("#compare-columns", CompareColumns)
        await box.remove_children()
        await box.mount_all([CompareColumn(spec, id=f"compare-col-{i}") for i, spec in enumerate(specs)])
        self._fit_columns()

    def _fit_columns(self) -> None:
        box = self.query_one("#compare-columns", CompareColumns)
        columns = self.columns
        widths = column_widths(box.size.width, len(columns))
        for col, width in zip(columns, widths, strict=True):
            col.styles.width = width
        in_view = box.size.width // widths[0] if widths else 0
        hint = (f" {in_view} of {len(columns)} columns in view; Tab to them, ←/→ scrolls."
                if in_view < len(columns) else "")
        if hint != self._scroll_hint:
            self._scroll_hint = hint
            self._show_status()

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit_columns)

    @property
    def columns(self) -> list[CompareColumn]:
        return list(self.query(CompareColumn))

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def compare(self, prompt: str, specs: list[str], cancel: threading.Event) -> None:
        """The models in sequence (run_comparison), text batched so the UI does not steal decode time."""
        buffers: dict[int, list[str]] = {}
        last = time.perf_counter()

        def flush(index: int) -> None:
            if buffers.get(index):
                self.post_message(self.Delta(index, "".join(buffers.pop(index))))

        def on_event(event: CompareEvent) -> None:
            nonlocal last
            if isinstance(event, ModelDelta):
                buffers.setdefault(event.index, []).append(event.text)
                now = time.perf_counter()
                if now - last >= FLUSH_S:
                    flush(event.index)
                    last = now
            elif isinstance(event, ModelStarting):
                self.post_message(self.Started(event.index))
            elif isinstance(event, ModelReady):
                self.post_message(self.Ready(event.index, event.model_name, event.quant))
            elif isinstance(event, ModelDone):
                flush(event.index)
                self.post_message(self.Done(event.index, event.result))

        session = self.session
        try:
            comparison = run_comparison(prompt, specs, session.system_prompt, session.sampling,
                                        on_event=on_event, cancel=cancel, load_options=self.load_options)
            warning = None
            if not comparison.cancelled and self.recorder is not None:  # Esc: nothing is kept
                warning = save_comparison(self.recorder, session, comparison)
            self.post_message(self.Finished(comparison, warning))
        except Exception as exc:  # run_comparison keeps each model's failure in its column; this is a bug
            self.post_message(self.Finished(None, f"The comparison failed: {exc}"))
        finally:
            self.idle.set()

    def _column(self, index: int) -> CompareColumn | None:
        try:
            return self.query_one(f"#compare-col-{index}", CompareColumn)
        except NoMatches:  # closed meanwhile
            return None

    def on_compare_screen_started(self, message: Started) -> None:
        if (col := self._column(message.index)) is not None:
            col.set_status("loading")

    def on_compare_screen_ready(self, message: Ready) -> None:
        if (col := self._column(message.index)) is not None:
            col.loaded(message.name, message.quant)

    def on_compare_screen_delta(self, message: Delta) -> None:
        if (col := self._column(message.index)) is not None:
            col.append(message.text)

    def on_compare_screen_done(self, message: Done) -> None:
        if (col := self._column(message.index)) is not None:
            col.finish(message.result)

    def on_compare_screen_finished(self, message: Finished) -> None:
        self.running = False
        self._cancel = None
        self.query_one("#compare-run", Button).disabled = False
        self.comparison = message.comparison
        if message.comparison is None:
            self.say(message.warning or "The comparison failed.", alert=True)
            return
        failed = sum(1 for r in message.comparison.results if r.status == "error")
        done = f"Done: {len(message.comparison.results)} models" + (f", {failed} failed" if failed else "")
        if message.warning:
            self.say(f"{done}. {message.warning}", alert=True)
        elif self.recorder is None or self.recorder.store is None:
            self.say(f"{done}. Not saved: conversations are not being saved (see Settings).")
        else:
            self.saved = True
            self.say(f"{done}. Saved with the conversation.")

    # -- a finished comparison, shown as it was (history, snapshot tests) -----------------------
    async def show_comparison(self, comparison: Comparison, status: str | None = None) -> None:
        for box, value in ((self.query_one("#compare-prompt", Input), comparison.prompt),
                           (self.query_one("#compare-specs", Input), ", ".join(r.spec for r in comparison.results))):
            box.value = value
            box.cursor_position = len(value)  # no selection left over from select-on-focus
        await self._build_columns([r.spec for r in comparison.results])
        for col, result in zip(self.columns, comparison.results, strict=True):
            col.finish(result)
        self.comparison = comparison
        self.say(status or f"Done: {len(comparison.results)} models.")

    # -- leaving ---------------------------------------------------------------------------------
    def action_close(self) -> None:
        """Esc: cancel the run (the reply stops, the models not started do not start) and go back."""
        if self._cancel is not None:
            self._cancel.set()
        self.dismiss(None)

    def on_unmount(self) -> None:
        """The app quits with a run going: cancel it too, so its worker is closed (the app's exit waits
        for the run's thread)."""
        if self._cancel is not None:
            self._cancel.set()
