"""The one way localllm starts a child process: model workers, the quantizer and the quantization jobs.

Every child gets a process group of its own, so Ctrl-C in the app's terminal reaches only the app, which
decides what happens (stop the reply, kill the job, drop its temp file). Not a new session: with
autogroup scheduling (the desktop default) a session is a scheduling group of its own, and llama.cpp's
threads then share about one core with any busy neighbour."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Callable

TAIL_LINES = 40  # what a failed job's message may quote


def spawn(command: list[str], *, env: dict[str, str] | None = None, stdin=subprocess.DEVNULL,
          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize: int = -1) -> subprocess.Popen[bytes]:
    """Start `command` in a process group of its own; `env` is added to this process's environment."""
    return subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=stderr,
                            env=dict(os.environ, **env) if env else None, process_group=0, bufsize=bufsize)


def run_to_end(command: list[str], on_line: Callable[[bytes], None], cancel: threading.Event | None,
               cancelled: Callable[[], BaseException]) -> tuple[int, list[bytes]]:
    """Run a job child to its end, handing each line of its stderr to `on_line`. On cancel it is killed
    and `cancelled()` is raised; on any error here (Ctrl-C included) it is killed too. Returns the exit
    code and the last lines of its stderr."""
    proc = spawn(command)
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, name=f"child-{proc.pid}", daemon=True).start()
    log: list[bytes] = []
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise cancelled()
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            log.append(line)
            del log[:-TAIL_LINES]
            on_line(line)
        return proc.wait(), log
    except BaseException:
        proc.kill()
        proc.wait()
        raise
