"""One load level against an OpenAI-compatible server: `level` worker threads, each with its own openai
SDK client, streaming requests and stamping each content chunk's arrival; a cancel shuts open streams."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from localllm.bench.errors import BenchError
from localllm.bench.load_plan import RequestSample, SweepPlan
from localllm.models.endpoints import api_base, openai_client, split_model

CANCEL_GRACE_S = 5.0  # after a cancel, how long in-flight streams get to notice before they are dropped


def failure_reason(exc: Exception) -> tuple[str, bool]:
    """(a one-line reason, whether the server did not answer at all or broke the connection)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "read timeout", False
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        if "refused" in str(cause).lower():
            return "connection refused", True
        return f"connection broke ({type(cause).__name__}); the server may have stopped", True
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}", False
    line = (str(exc).splitlines() or [""])[0][:120]
    return f"{type(exc).__name__}: {line}", False


class LevelRun:
    """One concurrency level: `level` workers take request indices until none are left."""

    def __init__(self, plan: SweepPlan, model: str, level: int, cancel: threading.Event) -> None:
        self.plan, self.model, self.level, self.cancel = plan, model, level, cancel
        self.cond = threading.Condition()
        self.next = 0
        self.samples: list[RequestSample] = []
        self.inflight: dict[int, float] = {}  # index -> its start
        self.streams: dict[int, object] = {}
        self.streak = 0  # connection errors in a row
        self.stop_reason = ""
        self.finalised = False
        self.t0 = self.last_end = 0.0
        self.first_out = False  # the level's clock starts when its first request goes out

    def run(self, say: Callable[[str], None]) -> tuple[list[RequestSample], float]:
        # until the first request goes out (after the workers' threads and clients are made, 26-133 ms
        # on a 2-core host), the clock runs from here; then it starts again from that request
        self.t0 = self.last_end = time.perf_counter()
        workers = [threading.Thread(target=self._worker, daemon=True, name=f"load-{self.level}-{i}")
                   for i in range(self.level)]
        for w in workers:
            w.start()
        closed_at, reported = None, 0
        while any(w.is_alive() for w in workers):
            with self.cond:
                self.cond.wait(0.2)
                done, failed = len(self.samples), sum(1 for s in self.samples if s.error)
            if done != reported:
                reported = done
                total = f"/{self.plan.requests}" if self.plan.requests else ""
                say(f"concurrency {self.level}: {done}{total} requests done"
                    + (f", {failed} failed" if failed else ""))
            if self.cancel.is_set():
                closed_at = closed_at or time.perf_counter()
                self._close_streams()  # again each turn: a stream may have opened since
                if time.perf_counter() - closed_at > CANCEL_GRACE_S:
                    break  # streams that did not notice are dropped; their threads are daemons
        with self.cond:
            self.finalised = True
            for index, started in self.inflight.items():
                self.samples.append(RequestSample(self.level, index, started - self.t0, None, None, 0, None,
                                                  [], error="cancelled"))
                self.last_end = time.perf_counter()
            return sorted(self.samples, key=lambda s: s.index), self.last_end - self.t0

    def _exhausted(self) -> bool:
        if self.plan.requests is not None:
            return self.next >= self.plan.requests
        return time.perf_counter() - self.t0 >= (self.plan.duration_s or 0)

    def _worker(self) -> None:
        client = openai_client(self.plan.url, self.plan.key_env, self.plan.timeout_s)
        try:
            while True:
                with self.cond:
                    if self.stop_reason or self.cancel.is_set() or self.finalised or self._exhausted():
                        return
                    index, self.next = self.next, self.next + 1
                    started = self.inflight[index] = time.perf_counter()
                    if not self.first_out:
                        self.first_out = True
                        self.t0 = self.last_end = started
                sample, lost = self._request(client, index, started)
                with self.cond:
                    if self.finalised:
                        return
                    del self.inflight[index]
                    self.samples.append(sample)
                    self.last_end = time.perf_counter()
                    self.streak = self.streak + 1 if lost else 0
                    if self.streak >= self.level:  # every worker in a row: the server is gone
                        self.stop_reason = sample.error
                    self.cond.notify_all()
        finally:
            client.close()
            with self.cond:
                self.cond.notify_all()

    def _request(self, client, index: int, started: float) -> tuple[RequestSample, bool]:
        s = RequestSample(self.level, index, started - self.t0, None, None, 0, None, [])
        usage_out, finished, lost = None, False, False
        try:
            stream = client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": self.plan.prompt(index)}],
                max_tokens=self.plan.gen_tokens, temperature=0, stream=True,
                stream_options={"include_usage": True},
                # ignore_eos: llama-server and vLLM; min_tokens: vLLM and llama-cpp-python's server
                # (which ignores ignore_eos); servers that take neither ignore both
                extra_body={"ignore_eos": True, "min_tokens": self.plan.gen_tokens})
            with self.cond:
                self.streams[index] = stream
            try:
                for chunk in stream:
                    now = time.perf_counter() - started
                    if any(c.delta is not None and c.delta.content for c in chunk.choices):
                        s.token_times_s.append(now)
                    finished = finished or any(c.finish_reason for c in chunk.choices)
                    if chunk.usage is not None:
                        usage_out, s.prompt_tokens = chunk.usage.completion_tokens, chunk.usage.prompt_tokens
                    timings = (chunk.model_extra or {}).get("timings")
                    if isinstance(timings, dict):
                        s.server_timings = timings
                    if self.cancel.is_set():
                        break
            finally:
                with self.cond:
                    self.streams.pop(index, None)
                stream.close()
            end = time.perf_counter() - started
            if self.cancel.is_set() and not finished:
                s.error = "cancelled"
            elif not finished:
                s.error = "the stream ended without a finish reason (interrupted by the server?)"
            else:
                s.e2e_s = end
        except Exception as exc:
            s.error, lost = ("cancelled", False) if self.cancel.is_set() else failure_reason(exc)
        s.ttft_s = s.token_times_s[0] if s.token_times_s else None
        s.output_tokens = usage_out if usage_out is not None and not s.error else len(s.token_times_s)
        return s, lost

    def _close_streams(self) -> None:
        """Shut the sockets of open streams down, which wakes a read blocked on them at once."""
        with self.cond:
            streams = list(self.streams.values())
        for stream in streams:
            try:
                net = stream.response.extensions["network_stream"]  # type: ignore[attr-defined]
                net.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            except Exception:  # already closed, or a transport without a socket
                pass


def pick_model(plan: SweepPlan) -> str:
    client = openai_client(plan.url, plan.key_env, min(plan.timeout_s, 30.0))
    try:
        ids = [m.id for m in client.models.list().data]
    except Exception as exc:
        raise BenchError(f"Cannot list the models of {api_base(plan.url)}: {failure_reason(exc)[0]}. Is the "
                         "server running, and is the URL right?") from None
    finally:
        client.close()
    wanted = split_model(plan.url)[1]
    if wanted and ids and wanted not in ids:
        raise BenchError(f"The server at {api_base(plan.url)} has no model {wanted!r}; it has: "
                         + ", ".join(ids))
    if not wanted and not ids:
        raise BenchError(f"The server at {api_base(plan.url)} lists no models; name one after '#'.")
    return wanted or ids[0]

