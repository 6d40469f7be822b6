"""The one way localllm starts a child process: model workers, the quantizer and the quantization jobs.

Every child gets a process group of its own, so Ctrl-C in the app's terminal reaches only the app, which
decides what happens (stop the reply, kill the job, drop its temp file). Not a new session: with
autogroup scheduling (the desktop default) a session is a scheduling group of its own, and llama.cpp's
threads then share about one core with any busy neighbour. Killing a child kills its group (kill_group),
so what it started (pip's build steps under --setup-gptq) goes too.

Children end with the app, however it ends (SIGKILL and the OOM killer included), through a lifeline
(Linux): this process holds the only write end of a pipe; each child inherits a read end of its own
(its own open file description), which spawn sets, after the fork, to send SIGKILL to the child's
process group when input is possible (fcntl F_SETOWN to -pgid, F_SETSIG, O_ASYNC). The kernel closes the
write end when this process dies, the pipe reaches EOF, and the kernel itself kills the group: nothing
in the child has to run (a job silent for minutes in native code, pip, a script under another
Python), and no thread of ours has to live on. Not PR_SET_PDEATHSIG: it fires when the *thread* that
forked exits, and the app starts workers from short-lived worker threads; nor a watchdog thread in the
child, which needs the child's cooperation and its GIL. The one gap: this process dying between the fork
and the fcntl calls (inside spawn) leaves that child unarmed."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import IO, Any

TAIL_LINES = 40  # what a failed job's message may quote

_lifeline_lock = threading.Lock()
_lifeline: tuple[int, int, int] | None = None  # (the pid that made it, read end, write end)


def _lifeline_read_end() -> int | None:
    """A new open file description of this process's lifeline read end; None where there is no way."""
    global _lifeline
    try:
        import fcntl
    except ImportError:
        return None
    if not hasattr(fcntl, "F_SETSIG"):  # Linux only
        return None
    with _lifeline_lock:
        if _lifeline is None or _lifeline[0] != os.getpid():
            r, w = os.pipe()  # close-on-exec: no child ever holds the write end
            _lifeline = (os.getpid(), r, w)
        r = _lifeline[1]
    try:
        # opened again through /proc: a description of its own, since F_SETOWN belongs to a description
        return os.open(f"/proc/self/fd/{r}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # no /proc
        return None


def _arm(fd: int, pgid: int) -> None:
    import fcntl

    fcntl.fcntl(fd, fcntl.F_SETOWN, -pgid)  # negative: the whole process group
    fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)


def _forget_lifeline() -> None:
    """In a plain fork of this process: drop the inherited ends, or the fork would keep our children alive."""
    global _lifeline, _lifeline_lock
    _lifeline_lock = threading.Lock()
    if _lifeline is not None:
        for fd in _lifeline[1:]:
            try:
                os.close(fd)
            except OSError:
                pass
        _lifeline = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_lifeline)


# what Popen takes for stdin/stdout/stderr: a file descriptor, PIPE/DEVNULL, a file object or None
_File = int | IO[Any] | None


def spawn(command: list[str], *, env: dict[str, str] | None = None, stdin: _File = subprocess.DEVNULL,
          stdout: _File = subprocess.DEVNULL, stderr: _File = subprocess.PIPE, bufsize: int = -1) -> subprocess.Popen[bytes]:
    """Start `command` in a process group of its own, tied to this process's life (the lifeline above);
    `env` is added to this process's environment."""
    lifeline = _lifeline_read_end()
    try:
        proc = subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=stderr,
                                env=dict(os.environ, **env) if env else None, process_group=0, bufsize=bufsize,
                                pass_fds=() if lifeline is None else (lifeline,))
        if lifeline is not None:
            try:
                _arm(lifeline, proc.pid)
            except OSError:  # gone already, its group with it
                pass
    finally:
        if lifeline is not None:
            os.close(lifeline)  # the child's copy keeps the description (and its arming) alive
    return proc


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the child and everything in its process group, then reap it."""
    if proc.returncode is None:  # not reaped: its pid is still its group's id, not reused
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


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
        kill_group(proc)
        raise
