"""The Hardware screen's picks table and machine card as Rich renderables: which picks are shown and in
what order, each row's cells, the sort keys of its headers. Apart from hardware_screen, which holds the
widgets, the threads that probe and rank, and the wishes: none of this needs a running app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text

from localllm.chat.machine_facts import GiB, HardwareInfo, Pick, Recommendation, card_rows

PLACEMENT_STYLE = {"full GPU": "green", "partial offload": "yellow", "CPU only": "", "does not fit": "red"}
SHOWN = 40  # fitting rows, at most two quants of a model, unless "all quants" is on


def gib(n: int) -> str:
    return f"{n / GiB:.1f}"


def _k(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n // 1024}k" if n >= 1024 else str(n)  # rounded down: the figure still fits


def hardware_card(hw: HardwareInfo) -> Table:
    """The same lines as `localllm hw` (machine.hardware.card_rows), as a two-column grid: a long value
    wraps under itself, not under the label."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in card_rows(hw, "press b to measure, ~1 s"):
        grid.add_row(label, Text(value))
    return grid


def placement(pick: Pick) -> str:
    if pick.verdict == "partial offload":
        return f"partial {pick.gpu_layers}/{pick.estimate.layers if pick.estimate else '?'} layers"
    return {"CPU only": "CPU"}.get(pick.verdict, pick.verdict)


def memory_cell(pick: Pick, rec: Recommendation) -> str:
    """What the pick needs against what is usable (free less the margin), in GiB."""
    vram = f"{gib(pick.vram_bytes)}/{gib(rec.vram_budget)} VRAM"
    ram = f"{gib(pick.ram_bytes)}/{gib(rec.ram_budget)} RAM"
    return {"full GPU": vram, "CPU only": ram}.get(pick.verdict, f"{vram} + {ram}" if pick.vram_bytes else ram)


# Header -> sort key; numbers sort best first (fastest, smallest, longest context).
SORT_KEYS: dict[str, Callable[[Pick], Any] | None] = {  # None: the table's own order
    "#": None, "Model": lambda p: p.name.lower(), "Format": lambda p: p.format, "Quant": lambda p: p.quant,
    "Placement": lambda p: p.verdict, "Need/usable GiB": lambda p: p.ram_bytes + p.vram_bytes,
    "tok/s": lambda p: -p.tok_s, "Max ctx": lambda p: -max(p.max_context.values(), default=0),
}


def table_rows(rec: Recommendation, all_quants: bool = False) -> list[Pick]:
    """Fitting picks best first, then the ones that do not fit, the closest to fitting first."""
    fitting = rec.top(len(rec.picks), None) if all_quants else rec.top(SHOWN, 2)
    rejected: list[Pick] = []
    seen: dict[str, int] = {}
    for pick in sorted(rec.rejected, key=lambda p: p.ram_bytes + p.vram_bytes):
        if all_quants or seen.get(pick.model, 0) < 1:
            rejected.append(pick)
            seen[pick.model] = seen.get(pick.model, 0) + 1
    return fitting + rejected


def same_pick(a: Pick, b: Pick) -> bool:
    return (a.model, a.format, a.quant, a.source) == (b.model, b.format, b.quant, b.source)


def row_cells(index: int, pick: Pick, rec: Recommendation) -> list[Text]:
    """The table's row for a pick: what does not fit is dimmed and has no rank."""
    dim = "" if pick.fits else "dim"
    cells: list[str | Text] = [
        str(index + 1) if pick.fits else "-", pick.name, pick.format, pick.quant,
        Text(placement(pick), style=PLACEMENT_STYLE[pick.verdict]), memory_cell(pick, rec),
        f"{pick.tok_s:.1f}", _k(pick.max_context.get(rec.wishes.kv_type if pick.format == "gguf" else "f16")),
        pick.why]
    return [c if isinstance(c, Text) else Text(c, style=dim) for c in cells]
