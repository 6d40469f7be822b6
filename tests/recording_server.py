"""A loopback OpenAI-compatible server that records every request's headers and streams the reply
pieces it is given verbatim (JSON-escaped by json.dumps, so a lone surrogate goes out as `\\ud800`, as a
broken server would send it)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "recorded-model"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> None:
        self.server.owner.requests.append((self.command, self.path, dict(self.headers)))  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._record()
        self._send(json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._record()
        chunks = []
        for text, finish in [*((p, None) for p in self.server.owner.pieces), ("", "stop")]:  # type: ignore[attr-defined]
            data = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                    "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
            chunks.append(f"data: {json.dumps(data)}\n\n".encode())
        self._send(b"".join(chunks) + b"data: [DONE]\n\n", "text/event-stream")


class RecordingServer:
    def __init__(self, pieces: list[str] | None = None, port: int = 0) -> None:
        self.pieces = pieces or ["Hello"]
        self.requests: list[tuple[str, str, dict]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def headers_seen(self) -> str:
        """Every header of every request, as one text to search."""
        return "\n".join(f"{k}: {v}" for _, _, h in self.requests for k, v in h.items())

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
