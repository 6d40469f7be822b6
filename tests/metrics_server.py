"""A loopback server that replays recorded bodies by path: `/metrics` in Prometheus text, `/props`,
`/api/ps`... in JSON; a body can be swapped between requests (counters that grow, or reset). Paths it
was not given answer 404. It can also stand in front of another server's OpenAI routes (`proxy`)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(__file__).parent / "data" / "server_metrics"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner: MetricsServer = self.server.owner  # type: ignore[attr-defined]
        with owner.lock:
            owner.paths.append(self.path)
            route = owner.routes.get(self.path.partition("?")[0])
            if callable(route):
                route = route()
        status, body, ctype = route if route is not None else (404, "not found", "text/plain")
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class MetricsServer:
    def __init__(self) -> None:
        self.routes: dict[str, object] = {}
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def metrics(self, body: str) -> None:
        with self.lock:
            self.routes["/metrics"] = (200, body, "text/plain; version=0.0.4")

    def json(self, path: str, body: str, status: int = 200) -> None:
        with self.lock:
            self.routes[path] = (status, body, "application/json")

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
