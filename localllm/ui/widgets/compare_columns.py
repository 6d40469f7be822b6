"""The Compare screen's columns: one per model, its header, reply and figures; the row of them
scrolls sideways a whole column at a time when they do not all fit."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalScroll, Vertical, VerticalScroll
from textual.widgets import Static

from localllm.chat.compare import CompareResult
from localllm.chat.report import limit_view
from localllm.runtime.figures import mib, rate, seconds
from localllm.runtime.metrics import ReplyStats

MIN_COLUMN = 32  # the figures and a readable reply; narrower screens scroll sideways instead
STATUS_TEXT = {"waiting": "waiting", "loading": "loading…", "generating": "generating…", "ok": "done",
               "stopped": "stopped", "length": "max tokens", "error": "error", "cancelled": "cancelled"}
STATUS_CLASS = {"stopped": "-warn", "length": "-warn", "cancelled": "-warn", "error": "-error"}


def figure_rows(stats: ReplyStats | None) -> list[tuple[str, str]]:
    """The figures under a reply, as shown; '-' where nothing was measured."""
    s = stats or ReplyStats()
    none = stats is None
    return [
        ("TTFT", "-" if none else seconds(s.ttft_s)),
        ("decode", "-" if none else rate(s.decode_tok_s)),
        ("BW limit", limit_view(s) or "-"),  # decode against the memory-bandwidth roofline, where known
        ("tokens", "-" if none else f"{s.prompt_tokens} in · {s.completion_tokens} out"),
        ("wall", "-" if none else seconds(s.wall_s)),
        ("CPU user", "-" if none else seconds(s.cpu_user_s)),
        ("CPU sys", "-" if none else seconds(s.cpu_sys_s)),
        ("peak RSS", "-" if none else mib(s.rss_peak_mib)),
    ]


def short_spec(spec: str) -> str:
    """A path's last part (the file or folder, with any @nf4); 'embedded' and URLs as written."""
    if spec.startswith(("http://", "https://")) or "/" not in spec.rstrip("/"):
        return spec
    return spec.rstrip("/").rsplit("/", 1)[1]


def column_widths(total: int, n: int, least: int = MIN_COLUMN) -> list[int]:
    """n columns sharing `total` cells, none under `least`. When they cannot all fit, as many as fit
    fill the screen exactly and the rest are scrolled to sideways (no column is cut by the edge)."""
    if n <= 0:
        return []
    total = max(total, least)
    base, extra = divmod(total, n)
    if base < least:
        return [total // max(1, total // least)] * n
    return [base + 1 if i < extra else base for i in range(n)]


class CompareColumn(Vertical):
    """One model: a header (name · quant, the spec and where it is), the reply, the figures."""

    def __init__(self, spec: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.model_name = ""
        self.quant = ""
        self.status = "waiting"
        self.text = ""
        self.error = ""
        self.stats: ReplyStats | None = None

    def compose(self) -> ComposeResult:
        yield Static(self._head(), classes="col-head")
        with VerticalScroll(classes="col-reply"):
            yield Static("", classes="col-text")
        yield Static(self._figures(), classes="col-figures")

    # -- what the tests (and screen readers) read ----------------------------------------------
    @property
    def figures(self) -> dict[str, str]:
        return dict(figure_rows(self.stats))

    # -- updates -------------------------------------------------------------------------------
    def set_status(self, status: str) -> None:
        self.status = status
        for cls in set(STATUS_CLASS.values()):
            self.remove_class(cls)
        if status in STATUS_CLASS:
            self.add_class(STATUS_CLASS[status])
        self._show_head()

    def loaded(self, name: str, quant: str) -> None:
        self.model_name, self.quant = name, quant
        self.set_status("generating")

    def append(self, text: str) -> None:
        self.text += text
        self._show_text()

    def finish(self, result: CompareResult) -> None:
        self.model_name = result.model_name or self.model_name
        self.quant = result.quant or self.quant
        self.text, self.error = result.text, result.error
        self.stats = result.reply_stats
        self.set_status(result.status)
        self._show_text()
        if self.is_mounted:
            self.query_one(".col-figures", Static).update(self._figures())

    # -- rendering -----------------------------------------------------------------------------
    def _show_head(self) -> None:
        if self.is_mounted:
            self.query_one(".col-head", Static).update(self._head())

    def _show_text(self) -> None:
        if not self.is_mounted:
            return
        body = Text(self.text)
        if self.error:
            if self.text:
                body.append("\n\n")
            body.append(self.error, style="bold red")
        elif not self.text and self.status == "ok":
            body = Text("(empty reply)", style="dim")
        self.query_one(".col-text", Static).update(body)

    def _head(self) -> Text:
        name = self.model_name or self.spec
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(name, style="bold")
        if self.quant:
            head.append(f" · {self.quant}")
        head.append("\n")
        head.append(STATUS_TEXT.get(self.status, self.status), style="italic")
        spec = short_spec(self.spec)
        if spec != name:
            head.append(f" · {spec}", style="dim")
        return head

    def _figures(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        rows = figure_rows(self.stats)
        for i, (label, value) in enumerate(rows):
            text.append(f"{label:<9}", style="dim")
            text.append(value, style="bold" if label == "decode" else "")
            if i < len(rows) - 1:
                text.append("\n")
        return text


class CompareColumns(HorizontalScroll):
    """The columns; when they do not all fit, ←/→ move by a whole column."""

    BINDINGS = [
        Binding("left", "step(-1)", "Previous column", show=False),
        Binding("right", "step(1)", "Next column", show=False),
    ]

    def action_step(self, direction: int) -> None:
        columns = list(self.query(CompareColumn))
        width = columns[0].outer_size.width if columns else 0
        if width <= 0:
            return
        column = round(self.scroll_x / width) + direction
        self.scroll_to(x=max(0, min(column * width, self.max_scroll_x)), animate=False)

