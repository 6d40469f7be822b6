"""What Ollama and LM Studio have loaded right now, asked of their servers on this machine only:
Ollama's GET /api/ps (at $OLLAMA_HOST, default 127.0.0.1:11434) and LM Studio's GET /api/v0/models
(127.0.0.1:1234; the models whose state is "loaded"). Both are asked at once and together get BUDGET_S:
a closed port refuses at once, a server that does not answer in time is left out, and listing never
waits longer. No API key or other credential is sent (plain http.client: no proxy, no .netrc), and a
host other than loopback is never asked."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from localllm.models.stores.base import Source
from localllm.models.stores.ollama import parse_ollama_name

BUDGET_S = 0.3
OLLAMA_PORT = 11434
LMSTUDIO_ADDRESS = ("127.0.0.1", 1234)
_MAX_BODY = 4 << 20
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Served:
    """One loaded model as its server names it."""

    tool: str  # "ollama" | "lmstudio"
    name: str  # Ollama's model name; LM Studio's model id (lower case, without an instance's ":N")
    quant: str = ""  # LM Studio's "quantization", when it says
    publisher: str = ""


def ollama_address() -> tuple[str, int] | None:
    """Where Ollama listens, read from $OLLAMA_HOST as Ollama reads it ("0.0.0.0", ":11434",
    "host:port", "http://host:port"); None when that is not this machine (it is then not asked)."""
    raw = (os.environ.get("OLLAMA_HOST") or "").strip().strip('"').strip("'")
    scheme, sep, rest = raw.partition("://")
    if not sep:
        scheme, rest = "http", raw
    if scheme != "http":
        return None
    try:
        parts = urlsplit("//" + rest)
        port = parts.port or OLLAMA_PORT
    except ValueError:
        return None
    host = parts.hostname or ""
    if host in ("", "0.0.0.0", "::"):  # the server's "every interface": ask it on loopback
        host = "127.0.0.1"
    return (host, port) if host in _LOOPBACK or host.startswith("127.") else None


def _get_json(address: tuple[str, int], path: str, timeout: float) -> Any:
    conn = http.client.HTTPConnection(address[0], address[1], timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            return None
        return json.loads(resp.read(_MAX_BODY + 1)[:_MAX_BODY])
    finally:
        conn.close()


def _ollama(address: tuple[str, int], timeout: float) -> list[Served]:
    data = _get_json(address, "/api/ps", timeout)
    models = data.get("models") if isinstance(data, dict) else None
    out = []
    for m in models if isinstance(models, list) else ():
        name = m.get("name") or m.get("model") if isinstance(m, dict) else None
        if isinstance(name, str) and name:
            out.append(Served("ollama", name))
    return out


def _lmstudio(address: tuple[str, int], timeout: float) -> list[Served]:
    data = _get_json(address, "/api/v0/models", timeout)
    models = data.get("data") if isinstance(data, dict) else None
    out = []
    for m in models if isinstance(models, list) else ():
        if not isinstance(m, dict) or m.get("state") != "loaded" or not isinstance(m.get("id"), str):
            continue
        model_id = m["id"].lower()
        if ":" in model_id.rpartition("/")[2]:  # a second instance: "qwen2.5-7b-instruct:2"
            model_id = model_id.rpartition(":")[0]
        quant, publisher = m.get("quantization"), m.get("publisher")
        out.append(Served("lmstudio", model_id, quant if isinstance(quant, str) else "",
                          publisher.lower() if isinstance(publisher, str) else ""))
    return out


def loaded(tools: set[str] | frozenset[str], budget: float = BUDGET_S) -> list[Served]:
    """The models the tools' servers have loaded now ([] for one that is down, slow or odd)."""
    asks = []
    if "ollama" in tools and (address := ollama_address()) is not None:
        asks.append((_ollama, address))
    if "lmstudio" in tools:
        asks.append((_lmstudio, LMSTUDIO_ADDRESS))
    results: list[list[Served]] = []
    lock = threading.Lock()

    def ask(fn: Any, address: tuple[str, int]) -> None:
        try:
            got = fn(address, budget)
        except (OSError, ValueError, http.client.HTTPException):
            return
        with lock:
            results.append(got)

    threads = [threading.Thread(target=ask, args=a, daemon=True, name="localllm-serving") for a in asks]
    for t in threads:
        t.start()
    deadline = time.monotonic() + budget
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    with lock:
        return [s for got in results for s in got]


def matches(source: Source, quant: str, served: Served) -> bool:
    """Whether a store's model is one its tool has loaded: Ollama by its name (defaults filled in:
    "smollm2:135m" is registry.ollama.ai/library/smollm2:135m); LM Studio by its model id, which is
    the model folder's name in lower case (without "-GGUF", with or without its publisher, an
    "@quant" when the folder holds several), and by the quant when the server says it. (The library
    marks a model only when one entry matches: an id that fits two files of one folder marks neither.)"""
    if served.tool != source.tool:
        return False
    if served.tool == "ollama":
        return _ollama_key(served.name) == _ollama_key(source.name)
    return _lmstudio_match(source, quant, served)


def _ollama_key(name: str) -> tuple[str, ...]:
    return tuple(p.lower() for p in parse_ollama_name(name))


def _lmstudio_match(source: Source, quant: str, s: Served) -> bool:
    publisher, _, rest = source.name.lower().partition("/")
    model, _, _file = rest.partition("/")
    model_id, _, at_quant = s.name.partition("@")
    want_quant = (at_quant or s.quant).upper().replace("-", "_")
    if want_quant and want_quant != quant.upper():
        return False
    if s.publisher and s.publisher != publisher:
        return False
    names = {model, model.removesuffix("-gguf")}
    return model_id in names or model_id in {f"{publisher}/{n}" for n in names}
