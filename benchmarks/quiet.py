"""Shared by the benchmark scripts: silence native code that logs to fd 2, and the decode runs' common
flags."""

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


def decode_args(description: str, tokens: int = 200, reps: int = 5, ctx: int = 2048):
    """An ArgumentParser with the flags every decode comparison takes (tokens, reps, warm-up, threads,
    context, seed)."""
    import argparse

    from localllm.config import default_threads

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tokens", type=int, default=tokens)
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--ctx", type=int, default=ctx)
    parser.add_argument("--seed", type=int, default=42)
    return parser

