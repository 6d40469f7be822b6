"""Entry point of a model worker process: `python -m localllm.runtime.worker_main`.

The app's pipe is fd 1 when we start; we keep a private copy of it for the protocol and point
fd 1 at stderr (the log file), so anything native code prints cannot garble the protocol or the TUI.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, cast

from localllm.backends import registry
from localllm.backends.base import Backend, BatchTiming, Chunk, Finish, Prefill, Usage
from localllm.config import AUTO_LAYERS, LoadOptions, SamplingParams
from localllm.errors import LocalLLMError
from localllm.runtime import protocol

FLUSH_S = 0.05



def placed(path: str, options: LoadOptions, backend: str) -> LoadOptions:
    """'auto' settings made concrete before a llama.cpp load, for any client (the session does it too,
    with its notices): GPU layers from the load plan, CPU extra buffers from this machine's probe."""
    if backend != "llama_cpp":
        return options
    from localllm.runtime import binding

    if options.extra_buffers not in ("on", "off"):
        options = dataclasses.replace(options, extra_buffers="on" if binding.extra_bufts_for(options.extra_buffers)[0]
                                      else "off")
    if options.gpu_layers == AUTO_LAYERS:
        from localllm.runtime.plan import plan_for

        try:
            options = dataclasses.replace(options, gpu_layers=plan_for(path, options).gpu_layers)
        except (LocalLLMError, OSError, ValueError, KeyError):
            pass  # the estimator cannot read it: the backend places it (all or none) and says why if it fails
    return options

class Worker:
    def __init__(self, out_fd: int) -> None:
        self._out = out_fd
        self._write_lock = threading.Lock()
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.cancel = threading.Event()
        self.backend: Backend | None = None

    def send(self, obj: dict[str, Any]) -> None:
        data = protocol.encode(obj)
        with self._write_lock:
            os.write(self._out, data)

    def read_requests(self) -> None:
        """Stdin reader thread: cancel acts at once, everything else is queued in order."""
        # os.read on the raw fd: a daemon thread blocked inside sys.stdin's buffered reader
        # makes interpreter shutdown abort ("could not acquire lock for <stdin>").
        pending = b""
        while chunk := os.read(0, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                try:
                    req = protocol.decode(line)
                except ValueError:
                    continue
                if req.get("op") == "cancel":
                    self.cancel.set()
                else:
                    self.requests.put(req)
        self.cancel.set()
        self.requests.put({"op": "exit"})  # the app closed the pipe: leave

    def handle(self, req: dict[str, Any]) -> bool:
        op = req.get("op")
        if op == "exit":
            return False
        if op == "load":
            if self.backend is not None:
                self.backend.unload()
            backend = self.backend = registry.create(req.get("backend", "llama_cpp"))
            options = placed(req["path"], LoadOptions.from_dict(req.get("options", {})), backend.name)
            if backend.name == "llama_cpp":  # llama.cpp reports its progress through the tensors
                # (a keyword of LlamaCppBackend.load only, not of the Backend protocol)
                info = cast(Any, backend).load(req["path"], options, progress=self._load_progress())
            else:
                info = backend.load(req["path"], options)
            self.send({"ev": "loaded", "info": dataclasses.asdict(info)})
        elif op == "caps":  # what this environment's llama-cpp-python can do (see localllm.runtime.binding)
            from localllm.backends.llama_cpp import binding_capabilities

            self.send({"ev": "caps", **binding_capabilities()})
        elif op == "count":
            self.send({"ev": "count", "n": self._backend().count_tokens(req["messages"])})
        elif op == "chat":
            self.cancel.clear()
            self.stream(req)
        elif op == "perplexity":  # optional: backends without it answer with an error event
            self.cancel.clear()
            # not in the Backend protocol: a backend without it raises AttributeError, sent as an error
            self.send({"ev": "perplexity", **cast(Any, self._backend()).perplexity(req["text"], self.cancel)})
        elif op == "batch":  # batched timing run; a backend without it answers that it cannot
            self.send({"ev": "batch", "timing": dataclasses.asdict(self.batch(req))})
        elif op == "unload":
            if self.backend is not None:
                self.backend.unload()
            self.backend = None
            self.send({"ev": "unloaded"})
        else:
            self.send({"ev": "error", "kind": "protocol", "message": f"unknown op {op!r}"})
        return True

    def _load_progress(self) -> Callable[[float], None]:
        """Progress events for the app, one per percent at most: llama.cpp calls back per tensor."""
        last = [-1]

        def report(fraction: float) -> None:
            pct = int(fraction * 100)
            if pct > last[0]:
                last[0] = pct
                self.send({"ev": "progress", "fraction": round(fraction, 3)})

        return report

    def stream(self, req: dict[str, Any]) -> None:
        """Relay a reply. Each token is stamped here when the backend yields it (perf_counter is
        CLOCK_MONOTONIC, shared by all processes); tokens go out in batches of up to FLUSH_S so
        the app wakes ~20 times a second instead of once per token, which on a machine with as
        many cores as llama.cpp threads costs decode speed."""
        sampling = SamplingParams(**req.get("sampling", {}))
        send, clock = self.send, time.perf_counter
        texts: list[str] = []
        stamps: list[float] = []
        counts: list[int] = []
        first = True
        last_flush = clock()

        def flush() -> None:
            send({"ev": "tok", "t": "".join(texts), "n": counts, "ts": stamps})
            texts.clear()

        for ev in self._backend().stream_chat(req["messages"], sampling, self.cancel):
            if type(ev) is Chunk:  # hot path
                now = clock()
                texts.append(ev.text)
                stamps.append(now)
                counts.append(ev.n_tokens)
                if first or now - last_flush >= FLUSH_S:
                    flush()
                    stamps, counts = [], []
                    first, last_flush = False, now
            elif type(ev) is Prefill:
                send({"ev": "prefill", "n": ev.prompt_tokens, "cached": ev.cached_tokens,
                      "ts": clock()})
            elif type(ev) is Usage:
                send({"ev": "usage", "prompt": ev.prompt_tokens, "completion": ev.completion_tokens,
                      "timings": ev.server_timings})
            elif type(ev) is Finish:
                if stamps:
                    flush()
                send({"ev": "done", "reason": ev.reason})

    def batch(self, req: dict[str, Any]) -> BatchTiming:
        backend = self._backend()
        prompt_tokens, new_tokens, batch = int(req["prompt_tokens"]), int(req["new_tokens"]), int(req["batch"])
        if not hasattr(backend, "generate_batch"):
            return BatchTiming(prompt_tokens=prompt_tokens, new_tokens=new_tokens, batch=batch, prefill_s=0.0,
                               decode_s=0.0, step_s=[], supported=False,
                               reason=f"the {backend.name} backend cannot batch: use --concurrency "
                                      "against a server")
        timing: BatchTiming = backend.generate_batch(prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                                                     batch=batch, seed=int(req.get("seed", 0)))
        return timing

    def _backend(self) -> Backend:
        if self.backend is None:
            from localllm.errors import NoModelLoaded

            raise NoModelLoaded()
        return self.backend

    def serve(self) -> None:
        threading.Thread(target=self.read_requests, name="requests", daemon=True).start()
        self.send({"ev": "ready", "pid": os.getpid()})
        while True:
            req = self.requests.get()
            try:
                if not self.handle(req):
                    break
            except LocalLLMError as exc:
                self.send({"ev": "error", "kind": type(exc).__name__, "message": str(exc)})
            except Exception as exc:
                traceback.print_exc()  # to the log file
                self.send({"ev": "error", "kind": type(exc).__name__,
                           "message": f"{type(exc).__name__}: {exc}"})
        if self.backend is not None:
            self.backend.unload()


def main() -> None:
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    Worker(out_fd).serve()
    sys.stderr.flush()
    os._exit(0)  # the model is unloaded; skip interpreter teardown racing the reader thread


if __name__ == "__main__":
    main()
