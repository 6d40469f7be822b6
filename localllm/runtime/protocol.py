"""The worker pipe protocol: one JSON object per line in each direction.

app -> worker: {"op": "load"|"caps"|"count"|"chat"|"perplexity"|"batch"|"cancel"|"unload"|"exit", ...}
worker -> app: {"ev": "ready"|"progress"|"loaded"|"caps"|"count"|"prefill"|"tok"|"done"|"perplexity"|"batch"|"error"|
               "unloaded", ...}
"""

from __future__ import annotations

import json

OPS = ("load", "caps", "count", "chat", "perplexity", "batch", "cancel", "unload", "exit")


def encode(obj: dict) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def decode(line: bytes) -> dict:
    return json.loads(line)
