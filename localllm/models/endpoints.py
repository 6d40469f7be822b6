"""OpenAI-compatible servers: who owns a local port, and which usual ports answer on loopback."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    import openai

# Where the usual servers listen by default.
USUAL_PORTS = {11434: "Ollama", 1234: "LM Studio", 8080: "llama-server", 8000: "vLLM"}
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
ENDPOINT_ENV = "LOCALLLM_ENDPOINT"
DEFAULT_KEY_ENV = "LOCALLLM_API_KEY"


def with_model(url: str, model: str) -> str:
    """One string for a model on a server (`URL#model-id`), so pickers, settings and timing-run
    configurations can name it like a file path."""
    return f"{split_model(url)[0]}#{model}" if model else url


def split_model(text: str) -> tuple[str, str]:
    """`URL#model-id` -> (URL, model-id); a plain URL gives an empty model id (the server's first)."""
    url, _, model = text.strip().partition("#")
    return url, model.strip()


def api_base(url: str) -> str:
    """Accept http://host:port, .../v1 or .../v1/ (and a #model suffix) and return the base ending in /v1."""
    url = split_model(url)[0].rstrip("/")
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


def openai_client(url: str, key_env: str | None = DEFAULT_KEY_ENV, read_timeout: float = 60.0,
                  connect: float = 5.0) -> openai.OpenAI:
    """The openai SDK's client for a server; the API key is read here from the environment variable the
    user named, sent only to that server and never logged. key_env None: no key at all (for servers the
    user did not name: whatever listens on a usual port is not trusted with it). No retries: a failure
    is said at once."""
    import openai

    key = os.environ.get(key_env or DEFAULT_KEY_ENV) if key_env is not None else None
    return openai.OpenAI(base_url=api_base(url), api_key=key or "none",
                         timeout=openai.Timeout(read_timeout, connect=connect), max_retries=0)


def list_models(url: str, timeout: float = 3.0, key_env: str | None = DEFAULT_KEY_ENV) -> list[str]:
    """The model ids a server lists at /v1/models. Raises OSError/ValueError when it does not answer
    like an OpenAI-compatible server (the caller says so in its own words)."""
    import openai

    try:
        listed = openai_client(url, key_env, timeout, connect=timeout).models.list()
    except openai.APIStatusError as exc:
        raise OSError(f"HTTP {exc.status_code} from {api_base(url)}/models") from None
    except openai.APIConnectionError as exc:
        raise OSError(f"no answer from {api_base(url)}: {exc}") from None
    except (openai.APIError, TypeError, AttributeError) as exc:  # an answer that is not a model list
        raise ValueError(f"the answer to /v1/models is not an OpenAI model list ({exc})") from None
    return [m.id for m in listed.data]


def discover(ports: dict[int, str] | None = None, timeout: float = 1.0) -> list[FoundServer]:
    """Ask the usual ports on 127.0.0.1 only (never another host) for /v1/models, without the API key:
    the user named none of these servers, so none of them gets it."""
    # A closed port refuses at once; the timeout only waits on one that accepted (1 s: a busy machine
    # answered too late at 0.3 s and the server went unlisted).
    found = []
    for port, kind in (ports or USUAL_PORTS).items():
        url = f"http://127.0.0.1:{port}/v1"
        try:
            models = list_models(url, timeout, key_env=None)
        except (OSError, ValueError):
            continue
        found.append(FoundServer(url, kind, models))
    return found
