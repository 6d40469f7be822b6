"""Live numbers of the current reply, sparklines of decode speed and memory.

The numbers are one widget that renders itself: updating it repaints a fixed-size region and
never re-lays-out the screen (a Static per number cost ~15 ms of layout per refresh, which on a
2-core machine comes straight out of decode speed)."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Label, Sparkline

from localllm.metrics import ReplyStats
from localllm.report import mib, rate, seconds

HISTORY = 60


def stats_rows(s: ReplyStats) -> list[tuple[str, str]]:
    rows = [
        ("TTFT", seconds(s.ttft_s)),
        ("prefill", rate(s.prefill_tok_s)),
        ("tokens", f"{s.prompt_tokens} in · {s.completion_tokens} out"),
        ("wall", seconds(s.wall_s)),
        ("CPU user", seconds(s.cpu_user_s)),
        ("CPU sys", seconds(s.cpu_sys_s)),
        ("CPU total", seconds(s.cpu_total_s)),
        ("CPU/wall", "-" if s.cpu_per_wall is None else f"{s.cpu_per_wall:.2f}"),
        ("lat p50", "-" if s.latency_p50_ms is None else f"{s.latency_p50_ms:.1f} ms"),
        ("lat p90", "-" if s.latency_p90_ms is None else f"{s.latency_p90_ms:.1f} ms"),
    ]
    if s.vram_now_mib is not None:  # only where an NVIDIA GPU reports this process
        rows += [("VRAM", mib(s.vram_now_mib)), ("VRAM peak", mib(s.vram_peak_mib))]
    return rows


class NumberBlock(Widget):
    """Renders label/value rows; refresh() repaints without a layout pass."""

    DEFAULT_CSS = "NumberBlock { height: auto; }"

    def __init__(self, rows: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.styles.height = rows
        self.rows: list[tuple[str, str]] = []
        self.headline = ""

    def set_rows(self, rows: list[tuple[str, str]]) -> None:
        self.rows = rows
        self.refresh()

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, (name, value) in enumerate(self.rows):
            if i:
                text.append("\n")
            text.append(f"{name:<10}", style="dim")
            text.append(value.rjust(max(0, self.size.width - 10)))
        return text


class MetricsPanel(Vertical):
    """Fed with ReplyStats snapshots and memory samples by the app; computes nothing itself."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate_history: deque[float] = deque(maxlen=HISTORY)
        self.rss_history: deque[float] = deque(maxlen=HISTORY)

    def compose(self) -> ComposeResult:
        yield Label("decode", classes="metric-title")
        yield NumberBlock(1, id="m-decode", classes="metric-big")
        yield Sparkline([], id="spark-rate")
        yield NumberBlock(12, id="m-table")
        yield Label("memory (RSS)", classes="metric-title")
        yield NumberBlock(2, id="m-rss")
        yield Sparkline([], id="spark-rss")

    def show_stats(self, s: ReplyStats) -> None:
        self.query_one("#m-decode", NumberBlock).set_rows([("tok/s", rate(s.decode_tok_s).split()[0])])
        self.query_one("#m-table", NumberBlock).set_rows(stats_rows(s))

    def push_rate(self, value: float) -> None:
        self.rate_history.append(value)
        self.query_one("#spark-rate", Sparkline).data = list(self.rate_history)

    def push_memory(self, rss_mib: float | None, peak_mib: float | None) -> None:
        if rss_mib is None:
            return
        self.rss_history.append(rss_mib)
        self.query_one("#spark-rss", Sparkline).data = list(self.rss_history)
        self.query_one("#m-rss", NumberBlock).set_rows([("now", mib(rss_mib)), ("peak", mib(peak_mib))])
