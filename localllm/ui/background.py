"""What the screens' long jobs (timing runs, load sweeps) share: calling back into the app from their
thread, and running then saving with every failure turned into a message for the screen."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localllm.errors import LocalLLMError


def caller(app, cancel: threading.Event) -> Callable[..., None]:
    """call(fn, *args) runs fn on the app's thread; when the screen or the app is gone, the job is
    cancelled rather than left running unseen."""
    def call(fn, *args) -> None:
        try:
            app.call_from_thread(fn, *args)
        except Exception:
            cancel.set()

    return call


def run_and_save(run: Callable[[], Any], save: Callable[[Any], Path]) -> tuple[Any, Path | None, str]:
    """(result, saved path, error): what finished is kept even when saving fails; a bug is a message
    too, so a screen never stays stuck in "running"."""
    result, path = None, None
    try:
        result = run()
        path = save(result)
    except (LocalLLMError, OSError) as exc:
        return result, path, str(exc)
    except Exception as exc:
        return result, path, f"{type(exc).__name__}: {exc}"
    return result, path, ""


def checked_plan(screen, busy: str):
    """The screen's plan (screen._plan()) when no job of it is running and the plan is valid; else
    None, with the reason said on the screen (screen._say) and as a notification."""
    if getattr(screen, "_cancel", None) is not None:
        screen.notify(busy, severity="warning")
        return None
    try:
        return screen._plan()
    except (ValueError, LocalLLMError) as exc:
        screen._say(str(exc))
        screen.notify(str(exc), severity="error")
        return None

