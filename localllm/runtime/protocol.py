"""The worker pipe protocol: one JSON object per line in each direction.

app -> worker: {"op": "load"|"caps"|"count"|"chat"|"perplexity"|"batch"|"cancel"|"unload"|"exit", ...}
worker -> app: {"ev": "ready"|"progress"|"loaded"|"caps"|"count"|"prefill"|"tok"|"done"|"perplexity"|"batch"|"error"|
               "unloaded", ...}
"""

from __future__ import annotations

import json
from typing import Any

OPS = ("load", "caps", "count", "chat", "perplexity", "batch", "cancel", "unload", "exit")


def encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def decode(line: bytes) -> dict[str, Any]:
    """One line as a JSON object; anything else (invalid JSON, or valid JSON that is not an object, such
    as `[1]` or `3`) raises ValueError, which both readers skip as a garbage line."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object: {type(obj).__name__}")
    return obj
