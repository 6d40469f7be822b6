"""Serving-load sweeps in the TUI (Ctrl+W on the timing-run screen): concurrency levels against an
OpenAI-compatible server, each level's row and a live chart of output tok/s and TTFT p90 against
concurrency as the levels finish, with the knee marked. Runs through bench.load.run_sweep, exactly as
`localllm bench -m URL --concurrency ...`, and is saved under <home>/bench/ the same way."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label
from textual_plotext import PlotextPlot

from localllm.bench.load import LevelResult, Slo, SweepPlan, SweepResult
from localllm.bench.load_report import server_cells, server_columns, server_note
from localllm.models.endpoints import ENDPOINT_ENV

FIELDS = {"url": ("Server", "http://127.0.0.1:8080#model"), "levels": ("Concurrency", "1,2,4,8"),
          "requests": ("Requests", "8"), "gen": ("New tokens", "32"), "slo": ("SLO", "ttft=500ms,tpot=50ms")}


COLUMNS = ("level", "ok", "failed", "req/s", "out tok/s", "TTFT p50 ms", "TTFT p90 ms", "TPOT p50 ms", "E2E p90 s",
           "goodput")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _cells(level: LevelResult, counters: list[tuple[str, str, str]]) -> list[str | Text]:
    """One level's row: the client's figures, then the server's own in the columns some level has."""
    return [str(level.level), str(level.completed), Text(str(level.failed), "bold red" if level.failed else ""),
            f"{level.req_s:.2f}", f"{level.output_tok_s:.1f}", _ms(level.ttft.p50), _ms(level.ttft.p90),
            _ms(level.tpot.p50), "-" if level.e2e.p90 is None else f"{level.e2e.p90:.2f}",
            Text(f"{level.goodput_fraction:.0%}", "green" if level.meets_slo else "yellow"),
            *server_cells(level, counters)]


class SweepScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close / cancel"),
        Binding("ctrl+r", "run", "Run sweep"),
    ]
    DEFAULT_CSS = """
    SweepScreen { layout: vertical; }
    #sweep-form { height: auto; border: round $primary; padding: 0 1; }
    .sweep-row { height: 1; }
    .sweep-row > Label { width: 13; color: $text-muted; }
    .sweep-row > Input { width: 1fr; }
    #sweep-buttons { height: 1; margin-top: 1; }
    #sweep-buttons > Button { width: 1fr; min-width: 8; margin-right: 1; }
    #sweep-status { height: auto; max-height: 3; color: $text-muted; }
    #sweep-table { height: auto; max-height: 10; }
    #sweep-server { height: auto; color: $text-muted; }
    #sweep-charts { height: 1fr; min-height: 8; }
    #sweep-charts PlotextPlot { width: 1fr; height: 1fr; }
    """

    def __init__(self, url: str = "") -> None:
        super().__init__()
        self.url = url or os.environ.get(ENDPOINT_ENV, "")
        self.levels: list[LevelResult] = []  # as they finish
        self.result: SweepResult | None = None
        self.saved_path: Path | None = None
        self._cancel: threading.Event | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="sweep-form") as form:
            form.border_title = "Serving load: parallel streams against a server"
            for key, (title, example) in FIELDS.items():
                with Horizontal(classes="sweep-row"):
                    yield Label(title)
                    value = self.url if key == "url" else ("" if key == "slo" else example)
                    yield Input(value, placeholder=example, id=f"sweep-{key}", compact=True)
            with Horizontal(id="sweep-buttons"):
                yield Button("Run", id="sweep-run", variant="primary", compact=True)
                yield Button("Cancel", id="sweep-cancel", variant="error", compact=True, disabled=True)
        yield Label("Name a server, then Run (Ctrl+R).", id="sweep-status")
        yield DataTable(id="sweep-table", zebra_stripes=True, cursor_type="row")
        yield Label("", id="sweep-server")
        with Horizontal(id="sweep-charts"):
            yield PlotextPlot(id="sweep-tok")
            yield PlotextPlot(id="sweep-ttft")
        yield Footer()

    def on_mount(self) -> None:
        self._fill_table()
        self._draw()
        self.query_one("#sweep-url" if not self.url else "#sweep-run").focus()

    # -- the plan -------------------------------------------------------------------------------------
    def _plan(self) -> SweepPlan:
        def text(key: str) -> str:
            return self.query_one(f"#sweep-{key}", Input).value.strip()

        def numbers(key: str) -> list[int]:
            try:
                values = [int(x) for x in text(key).split(",") if x.strip()]
            except ValueError:
                values = []
            if not values:
                raise ValueError(f"{FIELDS[key][0]}: type a number or a list such as {FIELDS[key][1]}.")
            return values

        url = text("url")
        if not url.startswith(("http://", "https://")):
            raise ValueError("Server: an OpenAI-compatible server's URL, such as http://127.0.0.1:8080 "
                             "(llama-server, vLLM, Ollama, LM Studio), optionally #model-id.")
        plan = SweepPlan(url, numbers("levels"), requests=numbers("requests")[0],
                         gen_tokens=numbers("gen")[0], slo=Slo.parse(text("slo")))
        plan.validate()
        return plan

    # -- running --------------------------------------------------------------------------------------
    @on(Button.Pressed, "#sweep-run")
    def action_run(self) -> None:
        from localllm.ui.background import checked_plan

        plan = checked_plan(self, "A sweep is running; cancel it first (Esc).")
        if plan is None:
            return
        self.levels, self.result = [], None
        self._fill_table()
        self._draw()
        self._cancel = threading.Event()
        self._set_running(True)
        self._say(f"Sweeping {', '.join(map(str, plan.levels))} parallel streams against {plan.url}…")
        self.run_sweep(plan, self._cancel)

    @work(thread=True, exclusive=True, group="sweep", exit_on_error=False)
    def run_sweep(self, plan: SweepPlan, cancel: threading.Event) -> None:
        from localllm.bench import history
        from localllm.bench.load import run_sweep
        from localllm.ui.background import caller, run_and_save

        call = caller(self.app, cancel)
        result, path, error = run_and_save(
            lambda: run_sweep(plan, progress=lambda line: call(self._say, line), cancel=cancel,
                              on_level=lambda level: call(self._level_done, level)),
            lambda result: history.save_sweep(result)[0])
        call(self._finished, result, path, error)

    def _level_done(self, level: LevelResult) -> None:
        self.levels.append(level)
        self._fill_table()
        self._draw()

    def _fill_table(self) -> None:
        """The levels so far, one row each; the server's own figures (prompt tokens reused, KV use at
        peak, ...) in the columns the Markdown report shows, those some level has a figure for, and the
        kind of server with what it did not answer below the table."""
        table = self.query_one("#sweep-table", DataTable)
        counters = server_columns(self.levels)
        heads = [*COLUMNS, *(heading for _, heading, _ in counters)]
        if [str(c.label) for c in table.columns.values()] != heads:
            table.clear(columns=True)
            table.add_columns(*heads)
        else:
            table.clear()
        for level in self.levels:
            table.add_row(*_cells(level, counters))
        self.query_one("#sweep-server", Label).update(Text(server_note(self.levels)))

    def _finished(self, result: SweepResult | None, path: Path | None, error: str) -> None:
        self._cancel = None
        self._set_running(False)
        if error:
            self._say(f"The sweep failed: {error}")
            self.notify(error, severity="error")
            return
        assert result is not None  # no error: a result
        self.result, self.saved_path = result, path
        self._draw()
        knee = f"knee at concurrency {result.knee}" if result.knee is not None else "no level met the SLO"
        head = "Cancelled, partial results" if result.cancelled else "Finished"
        self._say(f"{head}: {len(result.levels)} level(s), {knee} ({result.plan.slo.describe()})"
                  + (f"; {result.stopped_reason}" if result.stopped_reason else "") + f"; saved {path}")

    def _draw(self) -> None:
        """tok/s and TTFT p90 against concurrency; the knee (once known) as a vertical line."""
        knee = self.result.knee if self.result is not None else None
        xs: list[float] = [lv.level for lv in self.levels]  # ints: plotext's hints say floats
        charts = (("#sweep-tok", "output tok/s", [lv.output_tok_s for lv in self.levels]),
                  ("#sweep-ttft", "TTFT p90 ms", [(lv.ttft.p90 or 0) * 1000 for lv in self.levels]))
        for selector, title, ys in charts:
            plot = self.query_one(selector, PlotextPlot)
            plt = plot.plt
            plt.clear_data()
            plt.title(title + (f" · knee {knee}" if knee is not None else ""))
            plt.xlabel("concurrency")
            if xs:
                plt.plot(xs, ys, marker="braille")
                plt.scatter(xs, ys)
                plt.xticks(xs)
            if knee is not None:
                plt.vline(knee, "green")
            plot.refresh()

    def action_close(self) -> None:
        if self._cancel is not None and not self._cancel.is_set():
            self._cancel.set()  # the first Esc stops the sweep and keeps the finished levels
            self._say("Cancelling… finished levels are kept.")
            return
        self.dismiss(None)

    @on(Button.Pressed, "#sweep-cancel")
    def _cancel_pressed(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def on_unmount(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def _set_running(self, running: bool) -> None:
        self.query_one("#sweep-run", Button).disabled = running
        self.query_one("#sweep-cancel", Button).disabled = not running

    def _say(self, text: str) -> None:
        self.query_one("#sweep-status", Label).update(Text(text))
