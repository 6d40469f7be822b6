"""The CLI's progress: rich's bar on a terminal, short plain lines in a log."""

from __future__ import annotations

import io

from localllm.cli import progress
from localllm.cli.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_every_few_seconds_and_the_last_one(monkeypatch) -> None:
    clock = iter([100.0, 100.5, 101.0, 103.0, 103.1])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = ProgressBar(stream=out)
    for done in (1, 2, 3, 4):
        bar.update(done, 10, "quantizing")
    bar.update(10, 10, "quantizing", final=True, plain="100% (10/10)")
    bar.close()
    assert out.getvalue().splitlines() == ["quantizing  1/10   10%", "quantizing  4/10   40%", "100% (10/10)"]


def test_a_terminal_gets_richs_bar_with_sizes_and_speed() -> None:
    out = Terminal()
    bar = ProgressBar(unit="bytes", stream=out)
    bar.update(512 * 1024, 1024 * 1024, "[1/1] model.gguf", note="")
    bar.close()
    text = out.getvalue()
    assert "[1/1] model.gguf" in text and "50%" in text and "0.5/1.0 MB" in text
    assert "━" in text  # the bar itself


def test_a_file_name_with_brackets_is_shown_as_it_is() -> None:
    """Rich reads "[...]" as markup: "[bold]" vanished and "[/b]" raised MarkupError mid-download."""
    out = Terminal()
    bar = ProgressBar(unit="bytes", stream=out)
    bar.update(10, 100, "x[/b] model[bold].gguf", note="[/i] resumed")
    bar.close()
    assert "x[/b] model[bold].gguf" in out.getvalue() and "[/i] resumed" in out.getvalue()
