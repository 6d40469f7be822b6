"""llama-cpp-python's own OpenAI-compatible server on a free loopback port, for the tests that need a
real server: started the way `localllm serve` starts it (llama.cpp's extra CPU buffers as this machine's
probe chose: on an AMX Xeon whose AMX kernel dies of SIGILL, off), waited for (its /v1/models answers)
with a deadline, and stopped."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator

from tests.hubserver import free_port


def wait_until_serving(url: str, proc: subprocess.Popen, deadline_s: float) -> None:
    """Until the server's /v1/models answers; fails at once if it exits, or at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=2).read()
            return
        except OSError:
            assert proc.poll() is None, f"the server exited ({proc.returncode})"
            assert time.monotonic() < deadline, f"the server did not answer within {deadline_s:.0f} s"
            time.sleep(0.3)


@contextlib.contextmanager
def llama_server(model: str, *args: str, deadline_s: float = 60.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """(url, process) of `python -m llama_cpp.server --model MODEL --port PORT ARGS...`."""
    from localllm.runtime.llama_server import server_command

    port = free_port()
    argv, _why = server_command(model, "--port", str(port), *args)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, proc, deadline_s)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
