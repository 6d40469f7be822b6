"""The quantize screen: pick a source from the library, a target type, see the checked plan (disk and
memory, or why it is refused), run it with progress and cancel; the result joins the library and
Enter on it loads it. Dismisses with the result's path (to load) or None."""

from __future__ import annotations

import threading

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, ProgressBar, Select, Static

from localllm.models.quants import COMMON, OFFERED
from localllm.quantize.jobs import GPTQ, SAFETENSORS
from localllm.ui.plain import cell

TARGETS = [*COMMON, *(q for q in OFFERED if q not in COMMON), SAFETENSORS, GPTQ]


class QuantizeScreen(ModalScreen[str | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel / close"),
        Binding("ctrl+s", "start", "Start", priority=True),
    ]
    DEFAULT_CSS = """
    QuantizeScreen { align: center middle; }
    #q-box { width: 100; max-width: 100%; height: auto; max-height: 100%; border: round $primary;
             background: $surface; padding: 0 1; }
    .q-row { height: 1; margin-bottom: 1; }
    .q-row > Label { width: 12; color: $text-muted; }
    .q-row > Select, .q-row > Input { width: 1fr; }
    #q-gptq Input { width: 12; }
    #q-plan { height: auto; min-height: 2; }
    #q-plan.-refused { color: $error; }
    #q-progress-row { height: 1; }
    #q-bar { width: 40; }
    #q-status { width: 1fr; color: $text-muted; }
    """

    def __init__(self, sources: list[tuple[str, str]] | None = None) -> None:
        """`sources`: (label, path) to offer; default: the library's GGUFs and checkpoint folders."""
        super().__init__()
        self._sources = sources
        self._cancel: threading.Event | None = None
        self.plan = None
        self.result = None

    def compose(self) -> ComposeResult:
        with Vertical(id="q-box"):
            yield Label("Quantize on this machine · Ctrl+S starts, Esc cancels or closes", id="q-title")
            with Horizontal(classes="q-row"):
                yield Label("Source")
                yield Select([], prompt="loading the library…", id="q-source", compact=True)
            with Horizontal(classes="q-row"):
                yield Label("Make")
                yield Select([(t, t) for t in TARGETS], value="Q4_K_M", allow_blank=False, id="q-target",
                             compact=True)
            with Horizontal(classes="q-row"):
                yield Label("Output")
                yield Input(placeholder="default: under <home>/models", id="q-out", compact=True)
            with Horizontal(classes="q-row", id="q-gptq"):
                yield Label("GPTQ")
                yield Label("bits", classes="q-small")
                yield Input("4", id="q-bits", type="integer", compact=True)
                yield Label(" group", classes="q-small")
                yield Input("64", id="q-group", type="integer", compact=True)
            yield Static("", id="q-plan", markup=False)
            with Horizontal(id="q-progress-row"):
                yield ProgressBar(id="q-bar", show_eta=False)
                yield Label("", id="q-status", markup=False)
            yield Button("Load it", id="q-load", variant="primary", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#q-gptq").display = False
        self.query_one("#q-progress-row").display = False
        self.query_one("#q-load").display = False
        self.list_sources()

    @work(thread=True, exit_on_error=False, group="sources")
    def list_sources(self) -> None:
        sources = self._sources
        if sources is None:
            from localllm.models.library import list_models

            sources = [(f"{e.name} · {e.format} {e.quant}", e.path) for e in list_models() if e.usable and e.path]
        self.app.call_from_thread(self._set_sources, sources)

    def _set_sources(self, sources: list[tuple[str, str]]) -> None:
        select = self.query_one("#q-source", Select)
        select.set_options([(cell(label), value) for label, value in sources])  # file names, as they are
        if sources:
            select.value = sources[0][1]
        select.focus()

    # -- the plan follows every change ----------------------------------------------------------
    @on(Select.Changed)
    @on(Input.Changed)
    def replan(self) -> None:
        target = self.query_one("#q-target", Select).value
        self.query_one("#q-gptq").display = target == GPTQ
        if self._cancel is None:
            self.check_plan()

    def _request(self):
        from localllm.quantize.jobs import GPTQOptions

        source = self.query_one("#q-source", Select).value
        target = self.query_one("#q-target", Select).value
        out = self.query_one("#q-out", Input).value.strip() or None
        try:
            bits = int(self.query_one("#q-bits", Input).value or 0)
            group = int(self.query_one("#q-group", Input).value or 0)
        except ValueError:
            bits, group = 0, 0
        if not isinstance(source, str) or not isinstance(target, str):
            return None
        return source, target, out, GPTQOptions(bits=bits, group_size=group)

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def check_plan(self) -> None:
        from localllm.errors import LocalLLMError
        from localllm.quantize.jobs import plan_job

        request = self._request()
        if request is None:
            return
        try:
            source, target, out, gptq = request
            plan = plan_job(source, target, out, gptq=gptq)
        except LocalLLMError as exc:
            self.app.call_from_thread(self._show_plan, None, str(exc))
            return
        self.app.call_from_thread(self._show_plan, plan, f"Plan: {plan.describe()}")

    def _show_plan(self, plan, text: str) -> None:
        self.plan = plan
        widget = self.query_one("#q-plan", Static)
        widget.set_class(plan is None, "-refused")
        widget.update(text)

    # -- run ------------------------------------------------------------------------------------
    def action_start(self) -> None:
        if self.plan is None or self._cancel is not None:
            self.notify("Nothing to start: the plan above says why." if self.plan is None else "A job is running.",
                        severity="warning")
            return
        self._cancel = threading.Event()
        self.query_one("#q-progress-row").display = True
        self.run_job(self.plan, self._cancel)

    @work(thread=True, exclusive=True, group="job", exit_on_error=False)
    def run_job(self, plan, cancel: threading.Event) -> None:
        from localllm.errors import LocalLLMError
        from localllm.quantize.jobs import run_job

        call = self.app.call_from_thread
        call(self._progress, 0, None, f"{plan.target}: starting…")
        try:
            result = run_job(plan, progress=lambda i, n: call(self._progress, i, n, f"{plan.target}: {i}/{n}"),
                             cancel=cancel)
        except LocalLLMError as exc:  # cancelled or failed: nothing half-written is left
            call(self._finished, None, str(exc))
            return
        call(self._finished, result, f"Wrote {result.path} in {result.seconds:.1f} s; it is in the library.")

    def _progress(self, done: int, total: int | None, text: str) -> None:
        self.query_one("#q-bar", ProgressBar).update(total=total, progress=done)
        self.query_one("#q-status", Label).update(text)

    def _finished(self, result, text: str) -> None:
        self._cancel = None
        self.result = result
        self.query_one("#q-status", Label).update(text)
        if result is None:
            self.query_one("#q-bar", ProgressBar).update(total=None, progress=0)
        else:
            load = self.query_one("#q-load", Button)
            load.display = True
            load.focus()
        self.check_plan()  # the output exists now, or the space changed

    @on(Button.Pressed, "#q-load")
    def load_result(self) -> None:
        if self.result is not None:
            self.dismiss(str(self.result.path))

    def action_cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()  # the child is killed; the job says so and removes its partial output
            return
        self.dismiss(None)

    def on_unmount(self) -> None:
        """Closed or the app quits with a job running: cancel it, so its child is killed and its partial
        output removed (the app's exit waits for the job's thread, which would otherwise run to the end)."""
        if self._cancel is not None:
            self._cancel.set()
