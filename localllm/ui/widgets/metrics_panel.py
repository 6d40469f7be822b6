"""Live numbers of the current reply, with sparklines of decode speed and memory.

One widget that renders itself: an update repaints this fixed-size region only and adds no
widgets to the screen's layout. Each widget on screen adds to the cost of every frame, and on a
machine with as many cores as llama.cpp threads that cost comes straight out of decode speed."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from rich.text import Text
from textual.timer import Timer
from textual.widget import Widget

from localllm.chat.report import limit_view
from localllm.models.sampling_defaults import SHORT, ResolvedSampling
from localllm.models.server_figures import ServerStats
from localllm.models.server_stats import ServerStatsReader, client_vs_server
from localllm.runtime.figures import mib, rate, seconds
from localllm.runtime.metrics import ReplyStats

if TYPE_CHECKING:
    from localllm.backends.base import ModelInfo

HISTORY = 60
# A model behind a server: what the server itself says (models.server_stats), sampled in a thread at
# most this often, while a reply streams and while idle alike.
SERVER_EVERY_S = 1.0
# Figures of a window in which the server did that work (a prefill, a decode) stay shown until the next
# such window: an idle second must not blank the last reply's prefill rate or its cached tokens.
_STICKY = {"cached": "prefill", "prefill": "prefill", "decode": "decode", "draft acc": "decode"}
BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int, floor: float | None = None) -> str:
    """The last `width` values as bar characters, scaled from `floor` (default: their min) to max."""
    data = values[-width:] if width > 0 else []
    if not data:
        return ""
    lo = min(data) if floor is None else floor
    hi = max(data)
    span = hi - lo
    if span <= 0:
        return BARS[len(BARS) // 2] * len(data)
    return "".join(BARS[min(len(BARS) - 1, int((v - lo) / span * (len(BARS) - 1) + 0.5))] for v in data)


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
    if s.cached_tokens or s.cache_note:  # from the second turn on: what the KV cache saved
        rows.insert(3, ("reused", f"{s.cached_tokens} of {s.prompt_tokens} tok"))
        if s.cache_note:
            rows.insert(4, ("  why not all", s.cache_note))
    if (limit := limit_view(s)) is not None:  # decode against the memory-bandwidth roofline
        rows.insert(0, ("BW limit", limit))
    if s.client_cpu_s is not None:  # the model runs elsewhere: our own side separately
        rows.append(("client CPU", seconds(s.client_cpu_s)))
    if s.vram_now_mib is not None:  # only where an NVIDIA GPU reports this process
        rows += [("VRAM", mib(s.vram_now_mib)), ("VRAM peak", mib(s.vram_peak_mib))]
    if s.gpu_util_pct is not None:  # the GPUs the model's process holds memory on, mean over the reply
        rows.append(("GPU util", f"{s.gpu_util_pct:.0f}%"))
    return rows


class MetricsPanel(Widget):
    """Fed with ReplyStats snapshots and memory samples by the app; computes nothing itself."""

    DEFAULT_CSS = """
    MetricsPanel { width: 30; height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate_history: deque[float] = deque(maxlen=HISTORY)
        self.rss_history: deque[float] = deque(maxlen=HISTORY)
        self.stats: ReplyStats | None = None
        self.rss: tuple[float, float | None] | None = None
        self.estimate_mib: float | None = None  # the estimator's figure for the loaded model
        self.vram_plan_mib: float | None = None  # the load plan's VRAM, when it placed layers on a GPU
        self.load_s: float | None = None  # how long the loaded model took to load
        self.server_reader: ServerStatsReader | None = None
        self.server: ServerStats | None = None
        self.server_rows: list[tuple[str, str]] = []  # as shown: this sample's figures, the sticky kept
        self._server_timer: Timer | None = None
        self._server_busy = False
        # issue 25 item 4: the last reply's TTFT beside the server's own prompt time (client_vs_server),
        # and the server's sample of this reply's prefill window (for a server without response timings)
        self.vs_server: dict | None = None
        self._reply_prefill: ServerStats | None = None
        self._awaiting_prefill = False  # a reply began and no window with a prefill has come since
        self.sampling: list[tuple[str, str]] = []  # the loaded model's sampling: (knob, "value source")

    @property
    def rows(self) -> dict[str, str]:
        """Every label and value as shown (for tests and screen readers)."""
        shown = {"decode": rate(self.stats.decode_tok_s) if self.stats else "-"}
        if self.stats is not None:
            shown.update(stats_rows(self.stats))
        if self.rss is not None:
            shown["RSS now"], shown["RSS peak"] = mib(self.rss[0]), mib(self.rss[1])
        if self.estimate_mib is not None:
            shown["RSS estimate"] = self._estimate_text()
        if self.vram_plan_mib is not None:
            shown["VRAM plan"] = mib(self.vram_plan_mib)
        if self.load_s is not None:
            shown["load"] = seconds(self.load_s)
        if self.server is not None:
            shown["server"] = self.server.kind
            shown.update((f"server {name}", value) for name, value in self.server_rows)
            if self.server.missing and not self.server_rows:
                shown["server lacks"] = ", ".join(self.server.missing)
            shown.update(self.vs_server_rows())
        shown.update(self.sampling)
        return shown

    # -- the server's own figures --------------------------------------------------------------
    def watch_server(self, info: ModelInfo | None) -> None:
        """Start (a model behind a server) or stop (any other) sampling what the server says."""
        remote = info is not None and info.backend == "remote"
        self.server_reader = ServerStatsReader(info.path, key_env=(info.extra or {}).get("api_key_env"),
                                               model=info.name) if remote and info is not None else None
        self.server, self.server_rows = None, []
        self.vs_server, self._reply_prefill, self._awaiting_prefill = None, None, False
        if self.server_reader is not None and self._server_timer is None:
            self._server_timer = self.set_interval(SERVER_EVERY_S, self.sample_server)
        if self.server_reader is not None:
            self.sample_server()
        self.refresh()

    def sample_server(self) -> None:
        """One sample in a thread; a slow server never stacks samples up."""
        reader = self.server_reader
        if reader is None or self._server_busy:
            return
        self._server_busy = True
        self.run_worker(lambda: self._fetch(reader), thread=True, group="server-stats", exit_on_error=False)

    def _fetch(self, reader: ServerStatsReader) -> None:
        try:
            stats: ServerStats | None = reader.sample()
        except Exception:  # information only: a server that answers oddly must not break the chat
            stats = None
        self.app.call_from_thread(self.show_server, stats, reader)

    def show_server(self, stats: ServerStats | None, reader: ServerStatsReader | None = None) -> None:
        self._server_busy = False
        if reader is not None and reader is not self.server_reader:
            return  # another model was loaded meanwhile
        if stats is None:
            return
        fresh = stats.figures()
        names = {name for name, _ in fresh}
        kept = [(n, v) for n, v in self.server_rows if n in _STICKY and n not in names]
        self.server, self.server_rows = stats, fresh + kept
        if stats.prefill_time_mean_s is not None and self._awaiting_prefill:
            self._reply_prefill, self._awaiting_prefill = stats, False  # the first window since the reply began
            self._compare()
        self.refresh()

    def _compare(self) -> None:
        """After a reply: its TTFT against the server's prompt time for it (the response's own timings,
        else the prefill histogram's mean over the window the prefill fell in)."""
        s = self.stats
        if s is None or s.live or self.server_reader is None:
            return
        self.vs_server = client_vs_server(s.ttft_s, s.server_timings, self._reply_prefill)

    def vs_server_rows(self) -> list[tuple[str, str]]:
        """(label, text) of the client-against-server rows; the gap marked ">20%" when the two differ by
        more than that share of the client's TTFT."""
        vs = self.vs_server
        if vs is None:
            return []
        gap = f"{vs['network_and_queue_ms']:.0f} ms" + (" >20%" if vs["disagree"] else "")
        return [("client TTFT", f"{vs['client_ttft_ms']:.0f} ms"),
                ("server prompt", f"{vs['server_prompt_ms']:.0f} ms"), ("network + queue", gap)]

    def show_sampling(self, resolved: ResolvedSampling | None) -> None:
        """The values the loaded model samples with and where each came from (issue 24)."""
        self.sampling = []
        if resolved is None or set(resolved.sources.values()) == {"default"}:
            self.refresh()  # nothing the model or the user chose: the app's defaults, not shown
            return
        for knob, source in resolved.sources.items():
            if knob == "system_prompt":  # the prompt itself is in the settings box; here where it came from
                self.sampling.append(("system", source))
                continue
            value = resolved.value(knob)
            if isinstance(value, list):
                if not value:
                    continue
                value = ",".join(map(str, value))
            else:
                value = f"{value:g}"
            self.sampling.append((SHORT[knob], f"{value} {source.replace('generation_config', 'gen-config')}"))
        self.refresh()

    def _estimate_text(self) -> str:
        """The estimate and how far it is from the measured peak (the estimator's own report card)."""
        text = mib(self.estimate_mib)
        peak = self.rss[1] if self.rss is not None else None
        if peak and self.estimate_mib is not None:
            text += f" {100 * (self.estimate_mib - peak) / peak:+.0f}%"
        return text

    def show_stats(self, s: ReplyStats) -> None:
        if s.live and (self.stats is None or not self.stats.live):  # a new reply: the last one's gap goes
            self.vs_server, self._reply_prefill, self._awaiting_prefill = None, None, True
        self.stats = s
        self._compare()
        self.refresh()

    def push_rate(self, value: float) -> None:
        self.rate_history.append(value)
        self.refresh()

    def push_memory(self, rss_mib: float | None, peak_mib: float | None) -> None:
        if rss_mib is None:
            return
        if self.rss is not None and (mib(self.rss[0]), mib(self.rss[1])) == (mib(rss_mib), mib(peak_mib)):
            return  # an idle model: nothing on screen would change, so no repaint (the TUI idles near 0% CPU)
        self.rss_history.append(rss_mib)
        self.rss = (rss_mib, peak_mib)
        self.refresh()

    def render(self) -> Text:
        width = max(10, self.size.width)
        text = Text(no_wrap=True, overflow="ellipsis")

        def row(name: str, value: str, style: str = "") -> None:
            text.append(f"{name:<10}", style="dim")
            text.append(value.rjust(max(0, width - 10)) + "\n", style=style)

        text.append("decode\n", style="bold")
        row("tok/s", rate(self.stats.decode_tok_s).split()[0] if self.stats else "-", "bold")
        colours = self.app.theme_variables
        text.append(sparkline(list(self.rate_history), width, floor=0.0) + "\n\n",
                    style=colours.get("sparkline-rate", "green"))
        for name, value in stats_rows(self.stats) if self.stats else []:
            row(name, value)
        text.append("\nmemory (RSS)\n", style="bold")
        if self.rss is not None:
            row("now", mib(self.rss[0]))
            row("peak", mib(self.rss[1]))
        if self.estimate_mib is not None:
            row("estimate", self._estimate_text())
        if self.vram_plan_mib is not None:  # plan beside the measured VRAM rows above
            row("VRAM plan", mib(self.vram_plan_mib))
        if self.load_s is not None:
            row("load", seconds(self.load_s))
        if self.rss is not None:
            # from zero: a 2 MiB wobble must not look like a doubling
            text.append(sparkline(list(self.rss_history), width, floor=0.0),
                        style=colours.get("sparkline-memory", "cyan"))
        if self.server is not None:
            text.append(f"\n\nserver · {self.server.kind}\n", style="bold")
            for name, value in self.server_rows:
                row(name, value)
            if self.server.missing and not self.server_rows:
                text.append("no " + ", ".join(self.server.missing) + "\n", style="dim")
            for name, value in self.vs_server_rows():  # the labels are wider than row()'s 10 columns
                marked = value.endswith(">20%")
                text.append(name, style="dim")
                text.append(value.rjust(max(1, width - len(name))) + "\n", style="bold yellow" if marked else "")
        if self.sampling:
            text.append("\n\nsampling (from)\n", style="bold")
            for name, value in self.sampling:
                row(name, value)
        return text
