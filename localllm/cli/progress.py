"""Progress on stderr for the CLI's long jobs (pull, quantize): rich's progress bar on a terminal, and
on a pipe or a log a plain line at most every few seconds plus the last one, so logs stay short."""

from __future__ import annotations

import sys
import time
from typing import TextIO

LOG_EVERY_S = 2.0


class ProgressBar:
    """update(done, total, description, note) as often as wanted; close() when the job ends."""

    def __init__(self, *, unit: str = "steps", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.unit = unit  # "bytes": sizes and speed; else counts
        self._last = 0.0
        self._rich = None
        self._task = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            sized = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
            # file names and messages, as they are: Rich would read "[...]" in them as markup
            self._rich = Progress(TextColumn("{task.description}", markup=False), BarColumn(), TaskProgressColumn(),
                                  *sized, TimeRemainingColumn(), TextColumn("{task.fields[note]}", markup=False),
                                  console=Console(file=self.stream), transient=False)
            self._rich.start()
            self._task = self._rich.add_task("", total=None, note="")

    def update(self, done: int, total: int | None, description: str = "", note: str = "",
               final: bool = False, plain: str | None = None) -> None:
        """`plain`: the whole line for a log (else description, done/total and the percentage)."""
        if self._rich is not None and self._task is not None:  # the two are set together
            self._rich.update(self._task, completed=done, total=total, description=description, note=note)
            return
        now = time.monotonic()
        if not final and now - self._last < LOG_EVERY_S:
            return
        self._last = now
        pct = f"{done / total:4.0%}" if total else ""
        self.stream.write((plain or "  ".join(filter(None, [description, f"{done}/{total}", pct, note]))) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
