"""OpenAI-compatible servers: who owns a local port, and which usual ports answer on loopback."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

# Where the usual servers listen by default.
USUAL_PORTS = {11434: "Ollama", 1234: "LM Studio", 8080: "llama-server", 8000: "vLLM"}
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
ENDPOINT_ENV = "LOCALLLM_ENDPOINT"
DEFAULT_KEY_ENV = "LOCALLLM_API_KEY"


def api_base(url: str) -> str:
    """Accept http://host:port, .../v1 or .../v1/ and return the base ending in /v1."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url if url.endswith("/v1") else url + "/v1"


def is_loopback(url: str) -> bool:
    return (urlparse(api_base(url)).hostname or "") in LOOPBACK


def server_pid(url: str) -> int | None:
    """The pid listening on a loopback URL's port, so its CPU and RSS can be measured; None for a
    remote host or when the OS does not tell."""
    if not is_loopback(url):
        return None
    parsed = urlparse(api_base(url))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    import psutil

    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return None if conn.pid == os.getpid() else conn.pid
    return None


@dataclass
class FoundServer:
    url: str
    kind: str
    models: list[str]


def discover(ports: dict[int, str] | None = None, timeout: float = 0.3) -> list[FoundServer]:
    """Ask the usual ports on 127.0.0.1 only (never another host) for /v1/models."""
    found = []
    for port, kind in (ports or USUAL_PORTS).items():
        url = f"http://127.0.0.1:{port}/v1"
        try:
            with urllib.request.urlopen(url + "/models", timeout=timeout) as resp:
                data = json.loads(resp.read())
        except (OSError, ValueError, urllib.error.URLError):
            continue
        models = [m.get("id", "?") for m in data.get("data", []) if isinstance(m, dict)]
        found.append(FoundServer(url, kind, models))
    return found
