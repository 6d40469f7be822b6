"""Side-by-side timing runs in the TUI (F5): pick configurations, run them with live progress and
cancel, then a table and bar charts; the result is saved under <home>/bench/ and exports to
Markdown, CSV or JSON beside it. The plan runs through bench.run_plan, exactly as `localllm bench`."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    ProgressBar,
    SelectionList,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.selection_list import Selection

from localllm.bench import export as bench_export
from localllm.bench import results as bench_results
from localllm.bench.plan import BenchConfig, BenchPlan, Progress
from localllm.bench.results import BenchResult, Summary
from localllm.config.redact import redact_text
from localllm.models.embedded import EMBEDDED
from localllm.ui.plain import cell, plain
from localllm.ui.screens.open_model import store_label
from localllm.ui.widgets.bench_charts import CHARTS, BenchCharts

# A quant, format or precision tag in a model name: what differs between formats of one model.
_FORMAT_TAG = re.compile(r"[-._ ](?:[it]?q\d+(?:_[a-z0-9]+)*|mxfp4|bf16|fp16|f16|f32|gptq|awq|int[248]|bnb"
                         r"|nf4|[48]bit|gguf)(?=$|[-._ ])", re.I)
EXPORTS = {"md": bench_export.to_markdown, "csv": bench_export.to_csv}
FIELDS = {"reps": "Repetitions", "warmup": "Warm-up", "gen": "New tokens", "prompt": "Prompt tok",
          "threads": "Threads"}
STATUS_STYLE = {"ok": "green", "failed": "bold red", "cancelled": "yellow", "skipped": "dim"}


def family(name: str) -> str:
    """The model a file or checkpoint is a format of: 'SmolLM2-135M-Instruct.Q8_0.gguf' and
    'SmolLM2-135M-Instruct (embedded)' both give 'smollm2-135m-instruct'."""
    stem = name.split(" (")[0]
    stem = stem[:-5] if stem.lower().endswith(".gguf") else stem
    return _FORMAT_TAG.sub("", stem).strip("-._ ").lower()


def parse_threads(text: str) -> list[int]:
    """'0' (all cores), '4' or '1,2,4' (one configuration each); a ValueError says what to type."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = [-1]
    if any(v < 0 for v in values):
        raise ValueError(f"Threads: a number such as 4, a list such as 1,2,4, or 0 for all cores "
                         f"(got {text!r}).")
    return values or [0]


def short_name(model: str) -> str:
    """A configuration's name in the list and in the saved results: a file's name (with any @nf4), a
    store model's tag (ollama:NAME:TAG -> NAME:TAG), or a server's URL without its user:pass@ (it was
    shown and saved as given)."""
    from localllm.models.stores import is_store_ref

    if "://" in model:
        return redact_text(model)
    return model.partition(":")[2] if is_store_ref(model) else Path(model).name


class BenchScreen(Screen[None]):
    """The configurations picked run one after the other, each in its own worker process."""

    BINDINGS = [
        Binding("escape", "close", "Close / cancel run"),
        Binding("ctrl+r", "run", "Run"),
        Binding("ctrl+f", "same_model", "Every format of it"),
        Binding("ctrl+t", "toggle_view", "Table/charts"),
        Binding("ctrl+w", "sweep", "Load sweep"),
        Binding("f5", "export('md')", "Export .md"),
        Binding("f6", "export('csv')", "Export .csv"),
        Binding("f7", "export('json')", "Export .json"),
    ]
    DEFAULT_CSS = """
    BenchScreen { layout: vertical; }
    #bench-top { height: auto; max-height: 50%; }
    #bench-pick { width: 1fr; height: auto; border: round $primary; }
    #bench-models { height: auto; max-height: 8; border: none; }
    #bench-plan { width: 30; height: auto; border: round $secondary; padding: 0 1; }
    .bench-row { height: 1; }
    .bench-row > Label { width: 12; color: $text-muted; }
    .bench-row > Input { width: 1fr; }
    #bench-buttons { height: 1; margin-top: 1; }
    #bench-buttons > Button { width: 1fr; min-width: 8; margin-right: 1; }
    #bench-progress-row { height: auto; }
    #bench-bar { width: 30; }
    #bench-status { width: 1fr; height: auto; max-height: 3; color: $text-muted; }
    #bench-views { height: 1fr; }
    #bench-table { height: 1fr; }
    #bench-notes { height: auto; max-height: 4; color: $warning; }
    """

    def __init__(self, current: str | None = None) -> None:
        """`current`: the model the chat has loaded (its ref or path), listed first and picked."""
        super().__init__()
        self._current = current
        self.result: BenchResult | None = None
        self.saved_path: Path | None = None
        self.exported: dict[str, Path] = {}
        self.last_progress: Progress | None = None
        self._cancel: threading.Event | None = None  # set while a plan runs
        self._names: dict[str, str] = {}  # option value -> model name, for "every format of it"
        self._steps = 1  # progress steps of the running plan: configurations x (warm-up + reps)

    def compose(self) -> ComposeResult:
        defaults = BenchPlan()
        with Horizontal(id="bench-top"):
            with Vertical(id="bench-pick") as pick:
                pick.border_title = "Configurations (space picks, Ctrl+F: every format of it)"
                yield SelectionList[str](id="bench-models")
                yield Input(placeholder="add a GGUF path, checkpoint folder or server URL, Enter",
                            id="bench-add", compact=True)
            with Vertical(id="bench-plan") as plan:
                plan.border_title = "Plan"
                values = {"reps": defaults.reps, "warmup": defaults.warmup, "gen": defaults.gen_tokens,
                          "prompt": defaults.prompt_tokens, "threads": "0"}
                for key, title in FIELDS.items():
                    with Horizontal(classes="bench-row"):
                        yield Label(title)
                        yield Input(str(values[key]), id=f"bench-{key}", compact=True,
                                    type="text" if key == "threads" else "integer")
                with Horizontal(id="bench-buttons"):
                    yield Button("Run", id="bench-run", variant="primary", compact=True)
                    yield Button("Cancel", id="bench-cancel", variant="error", compact=True, disabled=True)
        with Horizontal(id="bench-progress-row"):
            yield ProgressBar(id="bench-bar", show_eta=False)
            yield Label("Pick configurations, then Run (Ctrl+R).", id="bench-status")
        with TabbedContent(id="bench-views"):
            with TabPane("Table", id="bench-table-pane"):
                yield DataTable(id="bench-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="bench-notes")
            with TabPane("Charts", id="bench-charts-pane"):
                yield BenchCharts(id="bench-charts")
        yield Footer()

    def on_mount(self) -> None:
        from localllm.models.library import embedded_entry

        entry = embedded_entry()  # one cached header read; the HF cache scan goes to a thread
        label = f"{entry.name} · {entry.quant}" if entry.usable else f"embedded model: {entry.detail}"
        current = self._current or ""
        other = current not in ("", EMBEDDED, entry.path)
        if other:  # the chat's model, picked: what "time this" means first
            name = short_name(current)
            self._add(current, f"{name} · loaded in the chat", name, selected=True)
        self._add(EMBEDDED, label, entry.name, selected=entry.usable and not other)  # the CLI's default, too
        self.query_one("#bench-models", SelectionList).focus()
        self.list_library()

    @work(thread=True, exit_on_error=False, group="library")
    def list_library(self) -> None:
        from localllm.hub.repos import human_size
        from localllm.models.library import cache_entries, embedded_entry, other_tools_models, path_entries

        try:
            entries = cache_entries() + path_entries()
        except Exception as exc:  # an unreadable cache must not break the screen
            self.app.call_from_thread(self.notify, f"Cannot list the library: {exc}", severity="warning")
            return
        for e in entries:
            if e.usable:
                label = f"{e.name} · {e.format} {e.quant} · {human_size(e.size_bytes)}"
                self.app.call_from_thread(self._add, e.path, label, e.name)
        try:  # Ollama's and LM Studio's models too, by ref, as the models screen lists them
            others = other_tools_models([embedded_entry(), *entries])
        except Exception as exc:  # a store that cannot be read must not break the screen
            self.app.call_from_thread(self.notify, f"Cannot read the model stores: {exc}", severity="warning")
            return
        for e in others:
            self.app.call_from_thread(self._add, e.sources[0].ref, store_label(e), e.name)

    def _add(self, value: str, label: str, name: str, selected: bool = False) -> None:
        models = self.query_one("#bench-models", SelectionList)
        if value in self._names:
            if selected:
                models.select(value)
            return
        self._names[value] = name
        models.add_option(Selection(plain(label), value, selected))

    # -- picking ------------------------------------------------------------------------------------
    @on(Input.Submitted, "#bench-add")
    def add_typed(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            self._add(text, f"{redact_text(text)} · typed", short_name(text), selected=True)
            event.input.value = ""

    def action_same_model(self) -> None:
        models = self.query_one("#bench-models", SelectionList)
        if models.highlighted is None:
            self.notify("Highlight a model in the list first.", severity="warning")
            return
        wanted = family(self._names[models.get_option_at_index(models.highlighted).value])
        same = [v for v, name in self._names.items() if family(name) == wanted]
        for value in same:
            models.select(value)
        self.notify(f"{len(same)} configuration(s) of {wanted} picked.")

    def _configs(self) -> list[BenchConfig]:
        from localllm.models.ref import ModelRef

        models = self.query_one("#bench-models", SelectionList)
        picked = set(models.selected)
        threads = parse_threads(self.query_one("#bench-threads", Input).value)
        return [BenchConfig(model=value, n_threads=t,
                            backend=ModelRef.parse(value).backend)
                for value in self._names if value in picked for t in threads]  # in list order

    def _plan(self) -> BenchPlan:
        def number(key: str) -> int:
            text = self.query_one(f"#bench-{key}", Input).value.strip()
            if not text.isdigit():
                raise ValueError(f"{FIELDS[key]}: type a whole number (got {text!r}).")
            return int(text)

        plan = BenchPlan(self._configs(), prompt_tokens=number("prompt"), gen_tokens=number("gen"),
                         reps=number("reps"), warmup=number("warmup"))
        plan.validate()
        return plan

    # -- running ------------------------------------------------------------------------------------
    @on(Button.Pressed, "#bench-run")
    def action_run(self) -> None:
        from localllm.ui.background import checked_plan

        plan = checked_plan(self, "A run is going on; cancel it first (Esc).")
        if plan is None:
            return
        self._cancel = threading.Event()
        self._steps = len(plan.configs) * (plan.warmup + plan.reps)
        self.query_one("#bench-bar", ProgressBar).update(total=self._steps, progress=0)
        self._set_running(True)
        self._say(f"Starting {len(plan.configs)} configuration(s)…")
        self.run_plan(plan, self._cancel)

    @work(thread=True, exclusive=True, group="bench", exit_on_error=False)
    def run_plan(self, plan: BenchPlan, cancel: threading.Event) -> None:
        from localllm.bench.runs import run_plan
        from localllm.ui.background import caller, run_and_save

        call = caller(self.app, cancel)
        result, path, error = run_and_save(
            lambda: run_plan(plan, progress=lambda p: call(self._progress, p, plan), cancel=cancel),
            bench_results.save)
        call(self._finished, result, path, error)

    def _progress(self, p: Progress, plan: BenchPlan) -> None:
        self.last_progress = p
        per = plan.warmup + plan.reps
        done = {"warmup": p.index * per + p.rep, "rep": p.index * per + plan.warmup + p.rep}.get(
            p.phase, (p.index + 1) * per if p.phase in ("done", "failed", "cancelled", "skipped") else None)
        if done is not None:
            self.query_one("#bench-bar", ProgressBar).update(progress=done)
        self._say(str(p))

    def _finished(self, result: BenchResult | None, path: Path | None, error: str) -> None:
        self._cancel = None
        self._set_running(False)
        if result is not None:
            self.result, self.saved_path = result, path
            self.exported = {}
            self._show(result)
        if error:
            self._say(f"The run failed: {error}")
            self.notify(error, severity="error")
            return
        assert result is not None  # no error: a result
        failed = sum(r.status == "failed" for r in result.rows)
        head = "Cancelled, partial results" if result.cancelled else "Finished"
        self._say(f"{head}: {len(result.rows) - failed} of {len(result.rows)} ran"
                  + (f", {failed} failed" if failed else "") + f"; saved {path}")

    def action_cancel(self) -> None:
        if self._cancel is not None and not self._cancel.is_set():
            self._cancel.set()  # run_plan stops mid-reply and keeps what finished
            self._say("Cancelling… the finished repetitions are kept.")

    @on(Button.Pressed, "#bench-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_close(self) -> None:
        if self._cancel is not None and not self._cancel.is_set():
            self.action_cancel()  # first Esc stops the run, so its partial results can be seen
            return
        self.dismiss(None)

    def on_unmount(self) -> None:
        if self._cancel is not None:
            self._cancel.set()  # closing the screen (or the app) ends the worker processes too

    def _set_running(self, running: bool) -> None:
        self.query_one("#bench-run", Button).disabled = running
        self.query_one("#bench-cancel", Button).disabled = not running

    def _say(self, text: str) -> None:
        self.query_one("#bench-status", Label).update(Text(text))

    # -- results ------------------------------------------------------------------------------------
    def _show(self, result: BenchResult) -> None:
        table = self.query_one("#bench-table", DataTable)
        table.clear(columns=True)
        cols = result.present_columns()
        table.add_columns("#", "config", "quant", "status",
                          *(f"{c.title} {c.unit}".strip() for c in cols))
        for n, row in enumerate(result.rows, 1):
            cells = [bench_export.cell(row.columns.get(c.key, Summary())) for c in cols]
            table.add_row(str(n), cell(row.label), cell(row.quant), cell(row.status, STATUS_STYLE.get(row.status, "")),
                          *cells, key=str(n))
        # why a row failed or was cut short, in full: a table cell would truncate it
        notes = [f"{n} {r.label}: {r.status}: {r.reason.splitlines()[0]}"
                 for n, r in enumerate(result.rows, 1) if r.reason]
        notes += [f"{n} {r.label}: {note}" for n, r in enumerate(result.rows, 1) for note in r.notes]
        self.query_one("#bench-notes", Static).update(Text("\n".join(notes)))
        self.query_one(BenchCharts).show(
            [(r.label, r.status, {key: r.columns.get(key, Summary()).mean for key, _ in CHARTS})
             for r in result.rows])

    def action_sweep(self) -> None:
        """Serving-load sweeps against a server: the highlighted (or first picked) server URL, if any."""
        from localllm.ui.screens.sweep_screen import SweepScreen

        models = self.query_one("#bench-models", SelectionList)
        servers = [v for v in models.selected if v.startswith(("http://", "https://"))]
        self.app.push_screen(SweepScreen(servers[0] if servers else ""))

    def action_toggle_view(self) -> None:
        views = self.query_one(TabbedContent)
        views.active = "bench-charts-pane" if views.active == "bench-table-pane" else "bench-table-pane"

    def action_export(self, fmt: str) -> None:
        if self.result is None or self.saved_path is None:
            self.notify("Nothing to export yet: run a plan first (Ctrl+R).", severity="warning")
            return
        path = self.saved_path.with_suffix(f".{fmt}")
        if fmt == "json":  # the saved result is that export already (bench_export.to_json's text)
            self.exported[fmt] = path
            self.notify(f"Saved as JSON: {path}")
            return
        try:
            path.write_text(EXPORTS[fmt](self.result), encoding="utf-8")
        except OSError as exc:
            self.notify(f"Cannot write {path}: {exc.strerror or exc}", severity="error")
            return
        self.exported[fmt] = path
        self.notify(f"Wrote {path}")
