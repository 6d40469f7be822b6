"""Bar charts of a benchmark run: decode speed, peak RSS and time to first token per configuration."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

# (column key, chart title): the three numbers people compare first
CHARTS: tuple[tuple[str, str], ...] = (
    ("decode_tok_s", "decode tok/s"),
    ("rss_peak_mib", "peak RSS MiB"),
    ("ttft_ms", "TTFT ms"),
)


class BenchCharts(Vertical):
    """One bar chart per metric, side by side. Bars are labelled by row number, not by name: three
    charts share 80 columns, so the names go in a legend below (the table numbers its rows alike)."""

    DEFAULT_CSS = """
    BenchCharts { height: 1fr; }
    BenchCharts > Horizontal { height: 1fr; }
    BenchCharts PlotextPlot { width: 1fr; height: 1fr; }
    BenchCharts > #chart-legend { height: auto; max-height: 4; color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id)
        self.bars: dict[str, list[tuple[str, float]]] = {key: [] for key, _ in CHARTS}  # what is drawn

    def compose(self) -> ComposeResult:
        with Horizontal():
            for key, _ in CHARTS:
                yield PlotextPlot(id=f"chart-{key}")
        yield Static("No results yet.", id="chart-legend", markup=False)

    def show(self, rows: list[tuple[str, str, dict[str, float | None]]]) -> None:
        """rows: (label, status, {column key: mean}) in table order. A row without a value (a failed
        or skipped one) has no bar, and the legend says why."""
        for key, title in CHARTS:
            self.bars[key] = [(str(n), value) for n, (_, _, values) in enumerate(rows, 1)
                              if (value := values.get(key)) is not None]
            plot = self.query_one(f"#chart-{key}", PlotextPlot)
            plt = plot.plt
            plt.clear_data()
            plt.title(title)
            if self.bars[key]:
                plt.bar([n for n, _ in self.bars[key]], [v for _, v in self.bars[key]])
            plot.refresh()
        legend = [f"{n} {label}" + ("" if status == "ok" else f" ({status})")
                  for n, (label, status, _) in enumerate(rows, 1)]
        self.query_one("#chart-legend", Static).update("  ·  ".join(legend) or "No results yet.")
