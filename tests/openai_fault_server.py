"""A tiny loopback server speaking just enough of the OpenAI API to misbehave on purpose."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fault-model"


def _chunk(text: str, finish: str | None = None) -> bytes:
    data = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    return f"data: {json.dumps(data)}\n\n".encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked streaming, as real servers do
    mode = "ok"  # set per server: ok | html | 404 | 401 | stall | hang | malformed | die
    key = "secret-key-123"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "html":
            return self._send(200, b"<html><body>hello</body></html>", "text/html")
        if mode == "404":
            return self._send(404, b'{"error": "not found"}')
        if mode == "401" and self.headers.get("Authorization") != f"Bearer {self.key}":
            return self._send(401, b'{"error": {"message": "bad key"}}')
        if self.path.rstrip("/").endswith("/models"):
            return self._send(200, json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode())
        self._send(404, b"{}")

    def do_POST(self) -> None:
        mode = self.server.mode  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if mode == "401" and self.headers.get("Authorization") != f"Bearer {self.key}":
            return self._send(401, b'{"error": {"message": "bad key"}}')
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def write(data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        for word in ("Hello", " there", " friend"):
            write(_chunk(word))
        if mode == "stall":
            time.sleep(3)  # longer than the client's read timeout in the tests
        elif mode == "hang":  # accepts, starts, then says nothing more until the test ends
            self.server.closing.wait(120)  # type: ignore[attr-defined]
            return
        elif mode == "malformed":
            write(b"data: {not json\n\n")
        elif mode == "die":
            self.connection.shutdown(2)  # the server goes away mid-reply, mid-body
            self.close_connection = True
            return
        write(_chunk("", "stop"))
        write(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")


class FaultServer:
    def __init__(self, mode: str) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.mode = mode  # type: ignore[attr-defined]
        self.httpd.daemon_threads = True
        self.httpd.closing = threading.Event()  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.closing.set()  # type: ignore[attr-defined]
        self.httpd.shutdown()
        self.httpd.server_close()
