"""Shared by the benchmark scripts: silence native code that logs to fd 2."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def quiet_stderr():
    """llama.cpp logs every tensor to fd 2 (loading, quantizing): keep the report readable."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
