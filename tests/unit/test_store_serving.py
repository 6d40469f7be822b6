"""A model that Ollama or LM Studio is serving right now is shown as such (issue 23): their servers are
asked on loopback only (Ollama's /api/ps, LM Studio's /api/v0/models), within 0.3 s all told, with no
key; a loopback server answering in their real formats marks the store models it names."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from localllm.models import library, stores
from localllm.models.stores import serving
from tests.hubserver import tiny_gguf
from tests.unit.test_stores import _cli, _link, _manifest, _sha, checksums, use_stores

OLLAMA_PS = {"models": [{
    "name": "smollm2:135m", "model": "smollm2:135m", "size": 283_000_000,
    "digest": "9077fe9d2ae1a4a3a1b0c5e4a1e3c2a0b9e8d7c6f5a4b3c2d1e0f9a8b7c6d5e4",
    "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                "parameter_size": "134.52M", "quantization_level": "Q4_1"},
    "expires_at": "2026-12-06T23:04:05.123456789Z", "size_vram": 0, "context_length": 4096}]}


def _lmstudio_models(quant: str | None = "Q4_K_M") -> dict:
    qwen = {"id": "qwen2.5-0.5b-instruct", "object": "model", "type": "llm", "publisher": "lmstudio-community",
            "arch": "qwen2", "compatibility_type": "gguf", "state": "loaded", "max_context_length": 32768}
    if quant:
        qwen["quantization"] = quant
    smol = {"id": "smollm2-135m-instruct", "object": "model", "type": "llm", "publisher": "lmstudio-community",
            "arch": "llama", "compatibility_type": "gguf", "quantization": "Q4_1", "state": "not-loaded",
            "max_context_length": 8192}
    return {"object": "list", "data": [qwen, smol]}


class _Server:
    """A loopback HTTP server answering GET paths with fixed JSON bodies; it records every request's headers."""

    def __init__(self, bodies: dict[str, dict]) -> None:
        self.bodies, self.headers = bodies, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.headers.append(dict(self.headers))
                body = outer.bodies.get(self.path)
                data = json.dumps(body).encode() if body is not None else b"{}"
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made: list[_Server] = []

    def make(bodies: dict[str, dict]) -> _Server:
        made.append(_Server(bodies))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory, model_path) -> dict[str, Path]:
    home = tmp_path_factory.mktemp("serving") / "home"
    ollama, lms = home / ".ollama" / "models", home / ".lmstudio" / "models"
    digest = _sha(Path(model_path))
    _link(Path(model_path), ollama / "blobs" / f"sha256-{digest}")
    layer = {"mediaType": stores.ollama.MODEL_LAYER, "digest": f"sha256:{digest}", "size": Path(model_path).stat().st_size}
    _manifest(ollama, "registry.ollama.ai/library/smollm2/135m", [layer])
    other = home / "other.gguf"
    tiny_gguf(other, n_floats=5_000, file_type=7)
    other_digest = _sha(other)
    _link(other, ollama / "blobs" / f"sha256-{other_digest}")
    _manifest(ollama, "registry.ollama.ai/library/other/latest",
              [{"mediaType": stores.ollama.MODEL_LAYER, "digest": f"sha256:{other_digest}", "size": other.stat().st_size}])
    qwen = lms / "lmstudio-community" / "Qwen2.5-0.5B-Instruct-GGUF"
    qwen.mkdir(parents=True)
    tiny_gguf(qwen / "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", n_floats=6_000, file_type=15)
    tiny_gguf(qwen / "Qwen2.5-0.5B-Instruct-Q8_0.gguf", n_floats=7_000, file_type=7)
    return {"home": home, "ollama": ollama, "lmstudio": lms}


@pytest.fixture
def env(tree, tmp_path, monkeypatch) -> dict[str, Path]:
    use_stores(monkeypatch, tmp_path, tree["home"], tree["ollama"])
    monkeypatch.setenv("LOCALLLM_API_KEY", "sk-secret-localllm")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-openai")
    return tree


def _serving(entries) -> set[str]:
    return {s.ref for e in entries if e.serving for s in e.sources}


def test_what_ollama_and_lm_studio_have_loaded_is_marked_and_no_key_is_sent(env, servers, monkeypatch) -> None:
    ollama, lms = servers({"/api/ps": OLLAMA_PS}), servers({"/api/v0/models": _lmstudio_models()})
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama.port}")
    monkeypatch.setattr(serving, "LMSTUDIO_ADDRESS", ("127.0.0.1", lms.port))
    entries = library.list_models(serving=True)
    qwen = "lmstudio:lmstudio-community/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-"
    assert _serving(entries) == {"embedded", "ollama:smollm2:135m", qwen + "Q4_K_M.gguf"}
    assert not any(e.serving for e in library.list_models())  # not asked unless asked for
    for headers in ollama.headers + lms.headers:
        assert not {k.lower() for k in headers} & {"authorization", "cookie", "x-api-key"}
        assert not any("secret" in v for v in headers.values())
    assert len(ollama.headers) == 1 and len(lms.headers) == 1


def test_an_id_that_fits_two_files_marks_neither(env, servers, monkeypatch) -> None:
    lms = servers({"/api/v0/models": _lmstudio_models(quant=None)})
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(serving, "LMSTUDIO_ADDRESS", ("127.0.0.1", lms.port))
    assert _serving(library.list_models(serving=True)) == set()
    lms.bodies["/api/v0/models"] = {"data": [{**_lmstudio_models()["data"][0], "id": "qwen2.5-0.5b-instruct@q8_0",
                                              "quantization": None}]}
    assert _serving(library.list_models(serving=True)) == {
        "lmstudio:lmstudio-community/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q8_0.gguf"}


def test_nothing_listening_or_a_silent_server_costs_at_most_the_budget(monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(serving, "LMSTUDIO_ADDRESS", ("127.0.0.1", _closed_port()))
    start = time.monotonic()
    assert serving.loaded({"ollama", "lmstudio"}) == []
    assert time.monotonic() - start < 0.25
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setattr(serving, "LMSTUDIO_ADDRESS", ("127.0.0.1", silent.getsockname()[1]))
        start = time.monotonic()
        assert serving.loaded({"ollama", "lmstudio"}) == []
        assert time.monotonic() - start < serving.BUDGET_S + 0.1


def test_ollama_host_is_read_as_ollama_reads_it_and_only_loopback_is_asked(monkeypatch) -> None:
    for value, want in [("", ("127.0.0.1", 11434)), ("0.0.0.0", ("127.0.0.1", 11434)),
                        ("0.0.0.0:8080", ("127.0.0.1", 8080)), (":11500", ("127.0.0.1", 11500)),
                        ("http://localhost:5000", ("localhost", 5000)), ("127.0.0.2", ("127.0.0.2", 11434)),
                        ("example.com:11434", None), ("http://10.0.0.5:11434", None),
                        ("https://127.0.0.1:11434", None)]:
        monkeypatch.setenv("OLLAMA_HOST", value)
        assert serving.ollama_address() == want, value


def test_models_cli_shows_serving_and_changes_no_store(env, servers) -> None:
    before = checksums(env["ollama"], env["lmstudio"])
    ollama = servers({"/api/ps": OLLAMA_PS})
    vars_ = {"HOME": str(env["home"]), "OLLAMA_MODELS": str(env["ollama"]), "LOCALLLM_STORES": "ollama,lmstudio",
             "OLLAMA_HOST": f"127.0.0.1:{ollama.port}"}
    listed = json.loads(_cli("models", "--json", env_vars=vars_).stdout)
    by_id = {e["id"]: e for e in listed}
    assert by_id["embedded"]["serving"] is True and by_id["ollama:other:latest"]["serving"] is False
    table = _cli("models", env_vars=vars_).stdout
    assert "embedded + ollama smollm2:135m (serving)" in table
    assert "(serving)" not in next(line for line in table.splitlines() if line.startswith("ollama:other:latest"))
    assert checksums(env["ollama"], env["lmstudio"]) == before
