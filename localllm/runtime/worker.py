"""The app's side of a model worker process: spawn, talk over a pipe, explain a death."""

from __future__ import annotations

import io
import itertools
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from localllm import config
from localllm.backends.base import BatchTiming, Message, ModelInfo
from localllm.config import LoadOptions, SamplingParams
from localllm.errors import LocalLLMError, ModelLoadError, WorkerDied
from localllm.runtime import protocol
from localllm.runtime.children import kill_group, spawn

if TYPE_CHECKING:
    from localllm.runtime.metrics import Meter

SIGNAL_REASONS: dict[int, str] = {
    signal.SIGKILL: "it was killed (SIGKILL), most likely by the system's out-of-memory killer. "
                    "Try a smaller model or quantization, or a shorter context (--context)",
    signal.SIGABRT: "native code aborted (SIGABRT), usually llama.cpp rejecting a malformed or "
                    "unsupported model file",
    signal.SIGSEGV: "it crashed (SIGSEGV), usually a malformed or unsupported model file",
    signal.SIGBUS: "it crashed (SIGBUS): the model file changed or was truncated while mapped",
    signal.SIGTERM: "it was terminated (SIGTERM)",
}


def explain_exit(returncode: int | None) -> str:
    if returncode is None:
        return "its pipe closed while it was still running"
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return SIGNAL_REASONS.get(sig, f"it was stopped by {name}")
    return f"it exited with status {returncode}"


def tail(path: Path, lines: int = 12) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def meter_event(meter: Meter, event: dict[str, Any]) -> tuple[str, str | None]:
    """Feed one reply event from the worker to a Meter: the same for chat and timing runs.
    Returns (new text, finish reason once done); an error event raises."""
    kind = event["ev"]
    if kind == "tok":
        for n, at in zip(event["n"], event["ts"], strict=False):
            meter.tokens(n, at=at)  # stamped in the worker when the backend yielded them
        return event["t"], None
    if kind == "prefill":
        meter.prompt(event["n"], event.get("cached", 0))
    elif kind == "usage":
        meter.usage(event["prompt"], event["completion"], event.get("timings"))
    elif kind == "done":
        return "", event["reason"]
    elif kind == "error":
        raise LocalLLMError(event["message"])
    return "", None


def native_errors(log_tail: str) -> str:
    """The lines of a native library's log that say why something failed."""
    lines = [ln.strip() for ln in log_tail.splitlines()
             if re.search(r"error|unknown|invalid|unsupported|failed", ln, re.IGNORECASE)
             and "Traceback" not in ln]
    return "; ".join(dict.fromkeys(lines[-3:]))


# How long a worker may take to honour a stop (Esc, Ctrl-C) before it is killed; the next message starts a
# fresh one. A server's stream stops at its next chunk, so a stalled server is the only way to miss 0.5 s.
# llama.cpp stops within one token or one prompt batch, which takes seconds on a big model and a slow CPU.
STOP_GRACE_S = {"remote": 0.5}
DEFAULT_STOP_GRACE_S = 15.0
# Names each worker's log: a client's id() is reused once the last one is freed, so two workers
# started in the same second shared (and appended to) one log.
_LOG_SERIAL = itertools.count(1)
# Counting a prompt's tokens renders the chat template: a template that loops for CPU must not wedge the
# chat. Generous for a 128k-token prompt on a slow CPU.
COUNT_TIMEOUT_S = 30.0
POLL_S = 0.05


# OpenMP's wait policy is left at libgomp's default (spin a while, then sleep), as a bare llama-cpp-python
# process has it. Measured with benchmarks/busy_ratio.py on 2 cores: passive cost 29% on a quiet machine
# (0.71 of bare); active keeps an idle worker's threads spinning on every core; the default matched bare
# both quiet and with one core busy, once the worker no longer had a scheduling group of its own.


class WorkerClient:
    """One worker process. Events carry "_t", the perf_counter time the app received them."""

    def __init__(self, log_dir: Path | None = None, python: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        """`python` and `env`: another environment's interpreter for the worker (GPTQModel's, which
        needs a torch this one cannot have), and what it needs to find localllm."""
        self._python = python or sys.executable
        self._env = env or {}
        log_dir = log_dir or config.logs_dir()
        config.prune_worker_logs(log_dir)  # a log per worker start: keep the folder bounded
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_path = log_dir / f"worker-{stamp}-{os.getpid()}-{next(_LOG_SERIAL):04x}.log"
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_lock = threading.Lock()
        self.pid: int = 0
        self.stop_grace_s = DEFAULT_STOP_GRACE_S
        self._open_reply = False  # a chat whose done/error has not been read yet
        self._stop_at: float | None = None  # when a stop was asked for the open reply

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            self._proc = spawn([self._python, "-m", "localllm.runtime.worker_main"],
                               env={"PYTHONUNBUFFERED": "1", **self._env}, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=log, bufsize=0)
        self.pid = self._proc.pid
        threading.Thread(target=self._read, name=f"worker-{self.pid}", daemon=True).start()
        self._expect("ready", timeout=timeout)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _read(self) -> None:
        proc = self._proc  # close() may drop self._proc while this thread drains the pipe
        assert proc is not None and proc.stdout is not None
        clock = time.perf_counter
        put = self._events.put
        # stdout is unbuffered (bufsize=0, for stdin's sake): reading its lines straight off it costs one
        # syscall per byte, so lines are read through a buffer of our own.
        # (a FileIO at run time, which Popen's annotation calls IO[bytes])
        for line in io.BufferedReader(cast(io.RawIOBase, proc.stdout), 1 << 16):
            try:
                event = protocol.decode(line)
            except ValueError:
                continue
            if not isinstance(event.get("ev"), str):
                continue  # an object that is no event: garbage like an invalid line
            event["_t"] = clock()
            put(event)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        put({"ev": "died", "rc": rc, "_t": clock()})

    def _died(self, rc: int | None) -> WorkerDied:
        return WorkerDied(rc, explain_exit(rc), tail(self.log_path), str(self.log_path))

    def send(self, obj: dict[str, Any]) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise self._died(None)
        try:
            with self._write_lock:
                self._proc.stdin.write(protocol.encode(obj))
        except (BrokenPipeError, OSError):
            try:
                rc = self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                rc = None
            raise self._died(rc) from None

    def next_event(self, timeout: float | None = None) -> dict[str, Any]:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the model worker did not answer within {timeout} s") from None
        if event["ev"] == "died":
            self._events.put(event)  # every later call sees the death too
            raise self._died(event["rc"])
        return event

    def _expect(self, kind: str, timeout: float | None = None,
                on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        """The next event but a load's progress ones, which go to `on_progress` (only load() shows them)."""
        event = self.next_event(timeout)
        while event["ev"] == "progress" and kind != "progress":
            if on_progress is not None:
                on_progress(float(event["fraction"]))
            event = self.next_event(timeout)
        return self._check(event, kind)

    def _check(self, event: dict[str, Any], kind: str) -> dict[str, Any]:
        if event["ev"] == "error":
            said = native_errors(tail(self.log_path, 40))
            raise ModelLoadError(event["message"] + (f" llama.cpp said: {said}" if said else ""))
        if event["ev"] != kind:
            raise ModelLoadError(f"the worker sent {event['ev']!r} where {kind!r} was expected")
        return event

    def request(self, obj: dict[str, Any], kind: str, timeout: float | None = None) -> dict[str, Any]:
        """Send one request and wait for its answer event."""
        self.send(obj)
        return self._expect(kind, timeout=timeout)

    def load(self, path: str, options: LoadOptions, backend: str = "llama_cpp",
             on_progress: Callable[[float], None] | None = None) -> ModelInfo:
        """`on_progress(fraction)`, in this thread, as llama.cpp reads the file's tensors."""
        self.send({"op": "load", "backend": backend, "path": path,
                   "options": vars(options.resolved())})
        return ModelInfo(**self._expect("loaded", on_progress=on_progress)["info"])

    def count_tokens(self, messages: list[Message], timeout: float = COUNT_TIMEOUT_S) -> int:
        self.settle()
        self.send({"op": "count", "messages": messages})
        try:
            return int(self._expect("count", timeout=timeout)["n"])
        except TimeoutError:
            self.kill()
            raise LocalLLMError(
                f"The model worker did not count the prompt's tokens within {timeout:.0f} s: the model's chat "
                "template may loop. The worker was stopped; the next message starts it again. If it happens "
                "again, load another model (Ctrl+O).") from None

    def batch(self, prompt_tokens: int, new_tokens: int, batch: int, seed: int = 0,
              timeout: float | None = None) -> BatchTiming:
        """A batched timing run on the loaded model (see BatchTiming); supported=False says why a
        backend cannot. An error event raises LocalLLMError; no answer within timeout, TimeoutError."""
        self.settle()
        self.send({"op": "batch", "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "batch": batch,
                   "seed": seed})
        event = self.next_event(timeout)
        if event["ev"] == "error":
            said = native_errors(tail(self.log_path, 40))
            raise LocalLLMError(event["message"] + (f" The worker log says: {said}" if said else ""))
        if event["ev"] != "batch":
            raise LocalLLMError(f"the worker sent {event['ev']!r} where 'batch' was expected")
        return BatchTiming(**event["timing"])

    def chat(self, messages: list[Message], sampling: SamplingParams) -> Iterator[dict[str, Any]]:
        """Yield prefill/tok events; the last one is done or error. After cancel(), a worker that has not
        ended the reply within stop_grace_s is killed and the reply ends as stopped ("forced")."""
        self.settle()
        self._stop_at = None
        self.send({"op": "chat", "messages": messages, "sampling": vars(sampling)})
        self._open_reply = True
        while True:
            event = self._next_reply_event()
            if event["ev"] in ("done", "error"):
                self._open_reply = False
            yield event
            if event["ev"] in ("done", "error"):
                return

    def _next_reply_event(self) -> dict[str, Any]:
        while True:
            try:
                return self.next_event(timeout=POLL_S)
            except TimeoutError:
                if self._stop_at is not None and time.perf_counter() - self._stop_at > self.stop_grace_s:
                    self.kill()
                    self._open_reply = False
                    return {"ev": "done", "reason": "cancelled", "forced": True, "_t": time.perf_counter()}

    def settle(self) -> None:
        """A reply whose reader went away (Ctrl-C, an exception in the consumer) is stopped and its
        events read to the end before the next request, so no answer is taken for another's."""
        if not self._open_reply:
            return
        self.cancel()
        try:
            while self._next_reply_event()["ev"] not in ("done", "error"):
                pass
        except WorkerDied:
            pass
        self._open_reply = False

    def cancel(self) -> None:
        if self._stop_at is None:
            self._stop_at = time.perf_counter()
        if self.alive:
            try:
                self.send({"op": "cancel"})
            except WorkerDied:
                pass

    def kill(self) -> None:
        """Kill the worker now (it did not answer in time); its reader thread reports the death."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            kill_group(proc)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to leave; kill it if it does not. Its memory goes back to the OS."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self.send({"op": "exit"})
                proc.stdin.close()  # type: ignore[union-attr]
            except (WorkerDied, OSError):
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(proc)
        self._proc = None
