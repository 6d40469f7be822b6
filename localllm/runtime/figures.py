"""The meter's numbers as short text ("850 ms", "12.3 tok/s", "1.50 GiB"), shared by the chat's
reports, the timing runs' progress lines, the CLI and the TUI."""

from __future__ import annotations


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} tok/s"


def mib(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:.0f} MiB"
