"""This machine (CPU, memory, disk, GPUs) and the models that fit it, ranked for what the user wants.

Dismisses with the chosen recommend.Pick (download it with `pull_command` / `download_target`) or None."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Checkbox, DataTable, Footer, Input, Label, Select, Static
from textual.worker import get_current_worker

from localllm.chat import machine_facts as facts
from localllm.chat.machine_facts import USES, HardwareInfo, Pick, Recommendation, Wishes
from localllm.models.catalog import ModelSpec
from localllm.models.on_disk import OnDisk
from localllm.ui.screens.hardware_table import SORT_KEYS, gib, hardware_card, row_cells, same_pick, table_rows

FORMATS = {"gguf": ("gguf",), "gptq": ("gptq",), "bnb": ("bnb-nf4", "bnb-int8"), "fp16": ("fp16",)}
MAX_CONTEXT = 1 << 20

log = logging.getLogger(__name__)


def parse_context(text: str, longest: int = MAX_CONTEXT) -> int:
    """'8192', '8k' or '32K' as tokens; a ValueError says what to type instead."""
    raw = text.strip().lower().replace("_", "").replace(",", "")
    scale = 1024 if raw.endswith("k") else 1
    digits = raw[:-1] if scale > 1 else raw
    tokens = int(digits) * scale if digits.isdigit() else 0
    if not 256 <= tokens <= longest:
        raise ValueError(f"Context: type a number of tokens from 256 to {longest} (e.g. 8192 or 32k), "
                         f"not {text.strip()!r}")
    return tokens


def download_target(pick: Pick) -> tuple[str, str | None] | None:
    """(Hub repo, file or None for the whole repo); None when there is nothing to download."""
    src = pick.source
    if pick.on_disk or not src or src.startswith("embedded") or os.path.isabs(src) or src.startswith(("~", ".")):
        return None
    owner, name, *rest = src.split("/")
    return f"{owner}/{name}", "/".join(rest) or None


def pull_command(pick: Pick) -> str | None:
    target = download_target(pick)
    if target is None:
        return None
    repo, file = target
    return f"localllm pull {repo}" + (f" --file {file}" if file else "")


class HardwareScreen(Screen[Pick | None]):
    """Hardware card, wishes, ranked picks. Probing and ranking run in threads: the screen opens at once."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("enter", "choose", "Download pick", show=True),
        Binding("b", "measure", "Measure bandwidth"),
        Binding("r", "rescan", "Rescan"),
        Binding("a", "all_quants", "All quants"),
    ]
    DEFAULT_CSS = """
    HardwareScreen { layout: vertical; }
    #hw-top { height: auto; max-height: 45%; }
    #hw-card-box { width: 1fr; height: auto; max-height: 100%; border: round $primary; padding: 0 1; }
    #hw-wishes { width: 34; height: auto; border: round $secondary; padding: 0 1; }
    .hw-row { height: 1; }
    .hw-row > Label { width: 9; color: $text-muted; }
    .hw-row > Input, .hw-row > Select { width: 1fr; }
    .hw-row > Checkbox { width: 1fr; }
    #hw-context.-invalid { background: $error 25%; }
    #hw-message { height: auto; color: $error; }
    #hw-message.-empty { display: none; }
    #hw-table { height: 1fr; }
    #hw-why { height: auto; max-height: 4; padding: 0 1; }
    #hw-summary { height: auto; max-height: 20%; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, hardware: HardwareInfo | None = None, catalog: Sequence[ModelSpec] | None = None,
                 wishes: Wishes | None = None) -> None:
        super().__init__()
        self._given_hardware, self._given_catalog = hardware, catalog
        self.wishes = wishes or Wishes()
        self.hardware: HardwareInfo | None = None
        self.specs: tuple[ModelSpec, ...] = ()
        self.recommendation: Recommendation | None = None
        self._on_disk: dict[tuple[str, str], OnDisk] | None = None  # read once, in the first ranking's thread
        self.rows: list[Pick] = []  # the table's picks, in its order
        self.all_quants = False
        self._generation = 0  # a ranking started before the latest change is thrown away
        self._timer: Timer | None = None
        self._sort: tuple[str, bool] | None = None  # (column, descending) picked by a header click

    def compose(self) -> ComposeResult:
        with Horizontal(id="hw-top"):
            with VerticalScroll(id="hw-card-box") as box:
                box.border_title = "This machine"
                yield Static("Inspecting this machine…", id="hw-card")
            with Vertical(id="hw-wishes") as wishes:
                wishes.border_title = "What you want"
                with Horizontal(classes="hw-row"):
                    yield Label("Context")
                    yield Input(str(self.wishes.context), id="hw-context", compact=True)
                yield Static("", id="hw-message", classes="-empty", markup=False)
                with Horizontal(classes="hw-row"):
                    yield Label("Use")
                    yield Select([(u, u) for u in USES], value=self.wishes.use, allow_blank=False,
                                 id="hw-use", compact=True)
                with Horizontal(classes="hw-row"):
                    yield Label("KV cache")
                    yield Select([(k, k) for k in ("f16", "q8_0", "q4_0")], value=self.wishes.kv_type,
                                 allow_blank=False, id="hw-kv", compact=True)
                for pair in (("gguf", "gptq"), ("bnb", "fp16")):
                    with Horizontal(classes="hw-row"):
                        for name in pair:
                            ticked = any(f in self.wishes.formats for f in FORMATS[name])
                            yield Checkbox(name, ticked, id=f"hw-fmt-{name}", compact=True)
        yield DataTable(id="hw-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="hw-why")
        yield Static("", id="hw-summary")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in ("#", "Model", "Format", "Quant", "Placement", "Need/usable GiB", "tok/s", "Max ctx",
                      "Why"):
            table.add_column(label, key=label)
        table.focus()  # Enter picks the highlighted row; Tab reaches the wishes
        self.say("Inspecting this machine…")
        self._inspect()

    # -- workers (threads: NVML, the bandwidth probe and ranking ~300 candidates all block) -------------
    def _deliver(self, callback, *args) -> None:
        """From a thread worker: hand a result to the UI unless the worker or the screen is gone."""
        if get_current_worker().is_cancelled:
            return
        try:
            self.app.call_from_thread(callback, *args)
        except RuntimeError:
            pass  # the app is shutting down

    @work(thread=True, exclusive=True, group="hw-inspect")
    def _inspect(self) -> None:
        from localllm.models.catalog import load_catalog

        try:
            hw = self._given_hardware or facts.probe()
            specs = tuple(self._given_catalog) if self._given_catalog is not None else load_catalog()
        except Exception as exc:  # the screen says what failed instead of taking the app down
            self._deliver(self.say, f"Could not inspect this machine: {exc}", True)
            return
        if hw.cpu_bandwidth_gb_s is None and self._given_hardware is None:
            # first time on this machine: measure once (~1 s, cached after) before ranking, as `localllm
            # recommend` does, so both rank with this machine's figure instead of an assumed one
            self._deliver(self.say, "Measuring the CPU memory bandwidth (once on this machine, ~1 s)…")
            try:
                hw = dataclasses.replace(hw, cpu_bandwidth_gb_s=round(facts.measured_bandwidth(cpu=hw.cpu), 2))
            except Exception:  # ranked with the assumed figure; the summary says so and `b` retries
                log.exception("cannot measure the memory bandwidth")
        self._deliver(self._hardware_ready, hw, specs)

    @work(thread=True, exclusive=True, group="hw-measure")
    def _measure(self, hw: HardwareInfo) -> None:
        try:
            gb_s = round(facts.measured_bandwidth(refresh=True, cpu=hw.cpu), 2)
        except Exception as exc:
            self._deliver(self.say, f"Could not measure the memory bandwidth: {exc}", True)
            return
        self._deliver(self._hardware_ready, dataclasses.replace(hw, cpu_bandwidth_gb_s=gb_s), self.specs)

    @work(thread=True, exclusive=True, group="hw-rank")
    def _rank(self, hw: HardwareInfo, specs: tuple[ModelSpec, ...], wishes: Wishes, generation: int) -> None:
        from localllm.models.on_disk import find_on_disk

        if self._on_disk is None:
            try:
                self._on_disk = find_on_disk(specs)
            except Exception:  # the library unreadable: rank without it
                log.exception("cannot list the models on the disk")
                self._on_disk = {}
        try:
            rec = facts.recommend(hw, specs, wishes, on_disk=self._on_disk)
        except Exception as exc:
            self._deliver(self.say, f"Could not rank the models: {exc}", True)
            return
        self._deliver(self._show, rec, generation)

    # -- results --------------------------------------------------------------------------------------
    def _hardware_ready(self, hw: HardwareInfo, specs: tuple[ModelSpec, ...]) -> None:
        if not self.is_attached:
            return
        self.hardware, self.specs = hw, specs
        self.query_one("#hw-card", Static).update(hardware_card(hw))
        self.rerank(force=True)

    def rerank(self, force: bool = False) -> None:
        """Rank again for the wishes the widgets hold now; a bad value is said and nothing is ranked.
        Unless forced (new hardware facts), wishes that did not change rank nothing: the widgets' own
        Changed events at mount would otherwise rank everything a second time."""
        wishes = self._read_wishes()
        if wishes is None or self.hardware is None:
            return
        if not force and wishes == self.wishes and self._generation:
            return
        self.wishes = wishes
        self._generation += 1
        self.say("Ranking…")
        self._rank(self.hardware, self.specs, wishes, self._generation)

    def _show(self, rec: Recommendation, generation: int) -> None:
        if generation != self._generation or not self.is_attached:
            return
        self.recommendation = rec
        self._fill_table()
        w = rec.wishes
        lines = [f"{len(rec.picks)} options fit {w.context} tokens of context. Usable: {gib(rec.ram_budget)} "
                 f"GiB RAM" + (f", {gib(rec.vram_budget)} GiB VRAM on {rec.gpu}" if rec.gpu else "")
                 + f" (free less {w.margin:.0%})."]
        if not rec.picks:
            lines = [f"Nothing fits {w.context} tokens of context. What would:"]
            lines += [f"- {fix.what} ({fix.pick.verdict}: {fix.pick.why})" for fix in rec.fixes]
        lines += [f"note: {note}" for note in rec.notes]
        self.say("\n".join(lines))

    @on(DataTable.HeaderSelected)
    def sort_by(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header sorts by it (again: the other way); '#' goes back to the ranking."""
        key = str(event.column_key.value)
        if key not in SORT_KEYS:
            return
        self._sort = None if key == "#" else (key, not self._sort[1] if self._sort and self._sort[0] == key
                                               else False)
        self._fill_table()

    def _fill_table(self) -> None:
        table = self.query_one(DataTable)
        held = self.current  # a re-rank (a measured bandwidth, a sort) keeps the highlight on the same pick
        table.clear()
        rec = self.recommendation
        self.rows = table_rows(rec, self.all_quants) if rec else []
        if self._sort and rec:  # sorted within each group: what fits stays above what does not
            key, reverse = self._sort
            by = SORT_KEYS[key]
            assert by is not None  # "#" clears the sort
            self.rows = (sorted([p for p in self.rows if p.fits], key=by, reverse=reverse)
                         + sorted([p for p in self.rows if not p.fits], key=by, reverse=reverse))
        for i, p in enumerate(self.rows):
            assert rec is not None  # no recommendation: no rows
            table.add_row(*row_cells(i, p, rec), key=str(i))
        same = [i for i, p in enumerate(self.rows) if held is not None and same_pick(p, held)]
        if same:
            table.move_cursor(row=same[0])
        self._show_why()

    @on(DataTable.RowHighlighted)
    def _show_why(self) -> None:
        pick = self.current
        text = ""
        if pick is not None:
            cmd = pull_command(pick)
            how = ("Enter: pick it" + (f", or run {cmd}" if cmd else " (nothing to download)")) if pick.fits else ""
            text = f"{pick.name} {pick.quant} ({pick.format}): {pick.why}" + (f"\n{how}" if how else "")
        self.query_one("#hw-why", Static).update(Text(text))

    @property
    def current(self) -> Pick | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def say(self, text: str, alert: bool = False) -> None:
        summary = self.query_one("#hw-summary", Static)
        summary.update(Text(text, style="bold red" if alert else ""))

    # -- wishes ---------------------------------------------------------------------------------------
    def _read_wishes(self) -> Wishes | None:
        longest = max((s.max_context for s in self.specs), default=MAX_CONTEXT)
        context_input = self.query_one("#hw-context", Input)
        formats = tuple(f for name, fmts in FORMATS.items() if self.query_one(f"#hw-fmt-{name}", Checkbox).value
                        for f in fmts)
        problem = ""
        try:
            context = parse_context(context_input.value, longest)
        except ValueError as exc:
            problem, context = str(exc), 0
        context_input.set_class(bool(problem), "-invalid")
        if not formats:
            problem = "Formats: tick at least one of " + ", ".join(FORMATS)
        message = self.query_one("#hw-message", Static)
        message.update(problem)
        message.set_class(not problem, "-empty")
        if problem:
            return None
        return dataclasses.replace(self.wishes, context=context, formats=formats,
                                   use=str(self.query_one("#hw-use", Select).value),
                                   kv_type=str(self.query_one("#hw-kv", Select).value))

    @on(Input.Changed, "#hw-context")
    def _context_typed(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        # Typing 32768 is five changes: rank once, when the typing pauses.
        self._timer = self.set_timer(0.3, self.rerank)

    @on(Input.Submitted, "#hw-context")
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _wish_changed(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.rerank()

    # -- actions --------------------------------------------------------------------------------------
    @on(DataTable.RowSelected)
    def action_choose(self) -> None:
        pick = self.current
        if pick is None:
            return
        if not pick.fits:
            self.notify(f"{pick.name} {pick.quant} does not fit here: {pick.why}", severity="warning")
            return
        cmd = pull_command(pick)
        self.notify(f"To download it: {cmd}" if cmd else "Nothing to download: it is already here.",
                    title=f"{pick.name} {pick.quant} ({pick.format})")
        self.dismiss(pick)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_measure(self) -> None:
        if self.hardware is None:
            return
        self.say("Measuring the CPU memory bandwidth…")
        self._measure(self.hardware)

    def action_rescan(self) -> None:
        self.say("Inspecting this machine…")
        self._inspect()

    def action_all_quants(self) -> None:
        self.all_quants = not self.all_quants
        self._fill_table()
