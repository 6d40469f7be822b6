"""A deterministic loopback OpenAI-compatible server for load tests: /v1/models and streaming
/v1/chat/completions with a known time to first token and a known gap between tokens, serving requests
concurrently (or one at a time), failing or dying on demand."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "load-model"


def _event(data: dict | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def _chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
    return _event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that goes away (a closed keep-alive connection, a cancelled stream) is routine here."""


class SseServer:
    """ttft_s: sleep before the first token; interval_s: between tokens (scheduled against the stream's
    start, so jitter does not accumulate); serial: one stream at a time, the others queue; fail_every:
    answer every n-th request 503; die_after: after this many requests, drop connections and close the
    listening socket (later connections are refused); eos_after: the reply ends ("stop") after this many
    tokens, as a model that meets its end-of-sequence token, unless the request's min_tokens asks for more
    (min_tokens False: a server that ignores it);
    metrics: a callable whose text GET /metrics answers (Prometheus text), called once per request."""

    def __init__(self, ttft_s: float = 0.2, interval_s: float = 0.02, serial: bool = False,
                 fail_every: int = 0, die_after: int | None = None, usage: bool = True,
                 timings: dict | None = None, eos_after: int | None = None, metrics=None,
                 min_tokens: bool = True) -> None:
        self.ttft_s, self.interval_s, self.serial = ttft_s, interval_s, serial
        self.fail_every, self.die_after, self.usage, self.timings = fail_every, die_after, usage, timings
        self.eos_after, self.metrics, self.min_tokens = eos_after, metrics, min_tokens
        self.cond = threading.Condition()
        self.serial_lock = threading.Lock()
        self.bodies: list[dict] = []  # every POST's JSON body
        self.tokens_sent = 0
        self.aborted = 0  # streams the client closed before the end
        self.dead = False
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.sse = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> SseServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill(wait=True)

    def kill(self, wait: bool = False) -> None:
        """Stop accepting (connections are refused from now on); open connections are dropped by their
        handlers on their next request."""
        with self.cond:
            if self.dead and not wait:
                return
            self.dead = True

        def stop() -> None:
            self.httpd.shutdown()
            self.httpd.server_close()

        if wait:
            if self._thread.is_alive():
                stop()
        else:
            threading.Thread(target=stop, daemon=True).start()

    def wait(self, predicate, timeout: float = 60.0) -> None:
        """Wait for a condition on the server's counters, with a deadline sized for a slow shared host."""
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), "timed out waiting for the server"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each token leaves at once

    def log_message(self, *args) -> None:
        pass

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        if self.server.sse.dead:  # type: ignore[attr-defined]
            return self._drop()
        if self.path.rstrip("/").endswith("/models"):
            return self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        metrics = self.server.sse.metrics  # type: ignore[attr-defined]
        if self.path == "/metrics" and metrics is not None:
            data = metrics().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        self._json(404, {"error": {"message": "not found"}})

    def _write(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def do_POST(self) -> None:
        srv: SseServer = self.server.sse  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with srv.cond:
            if srv.dead:
                return self._drop()
            srv.bodies.append(body)
            n = len(srv.bodies)
            srv.cond.notify_all()
        if srv.die_after is not None and n > srv.die_after:
            srv.kill()
            return self._drop()
        if srv.fail_every and n % srv.fail_every == 0:
            return self._json(503, {"error": {"message": "overloaded, try later"}})
        with srv.serial_lock if srv.serial else contextlib.nullcontext():
            gen, finish = int(body.get("max_tokens") or 16), "length"
            if srv.eos_after is not None and srv.eos_after < gen:
                asked = int(body.get("min_tokens") or 0) if srv.min_tokens else 0
                gen, finish = max(srv.eos_after, min(asked, gen)), "stop"
                finish = "length" if gen == int(body.get("max_tokens") or 16) else finish
            self._stream(srv, gen, finish)

    def _stream(self, srv: SseServer, gen: int, finish: str = "length") -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        start = time.perf_counter()
        try:
            self._write(_chunk({"role": "assistant", "content": ""}))  # not a token: TTFT waits for content
            for i in range(gen):
                delay = start + srv.ttft_s + i * srv.interval_s - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                self._write(_chunk({"content": f" w{i}"}))
                with srv.cond:
                    srv.tokens_sent += 1
                    srv.cond.notify_all()
            extra = {"timings": srv.timings} if srv.timings else {}
            self._write(_chunk({}, finish, **extra))
            if srv.usage:
                self._write(_event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                                    "choices": [], "usage": {"prompt_tokens": 25, "completion_tokens": gen,
                                                             "total_tokens": 25 + gen}}))
            self._write(_event("[DONE]"))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client closed the stream
            self.close_connection = True
            with srv.cond:
                srv.aborted += 1
                srv.cond.notify_all()
