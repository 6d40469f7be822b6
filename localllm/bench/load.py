"""Serving-style load sweeps: N concurrent streams against an OpenAI-compatible server, level by level.

Each level runs `level` worker threads, each with its own openai SDK client; a worker takes the next
request until the level's requests (or its duration) are used up. Every request is kept raw (arrival
time of each content chunk); TTFT, ITL, TPOT, E2E percentiles, throughput and goodput under an SLO are
derived from them. When the server runs on this machine, its CPU time and peak RSS are measured too.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from localllm.bench.errors import BenchError
from localllm.bench.load_report import LevelResult, Stat, markdown, summarise
from localllm.models.endpoints import DEFAULT_KEY_ENV, api_base, openai_client, server_pid, split_model

__all__ = ["Slo", "SweepPlan", "RequestSample", "Stat", "LevelResult", "SweepResult", "run_sweep",
           "markdown"]

FILLER = "the quick brown fox jumps over a lazy dog by the river bank".split()
SLO_FORM = "ttft=500ms,tpot=50ms,e2e=2s (any of ttft, tpot, e2e; units ms or s, a bare number is ms)"
_SLO_ITEM = re.compile(r"^(ttft|tpot|e2e)\s*=\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?$")
MAX_LEVEL = 512
CANCEL_GRACE_S = 5.0  # after a cancel, how long in-flight streams get to notice before they are dropped
RSS_EVERY_S = 0.2


@dataclass
class Slo:
    """A latency target; None fields are not checked."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    @classmethod
    def parse(cls, text: str) -> Slo:
        """"ttft=500ms,tpot=50ms,e2e=2s"; empty text sets no target."""
        slo, seen = cls(), set()
        parts = [p.strip() for p in (text or "").split(",")]
        if (text or "").strip() and not any(parts):
            raise BenchError(f"Cannot read the SLO {text!r}; write it as {SLO_FORM}.")
        for part in filter(None, parts):
            match = _SLO_ITEM.match(part.lower())
            if not match:
                raise BenchError(f"Cannot read the SLO {text!r} at {part!r}; write it as {SLO_FORM}.")
            key, number, unit = match.groups()
            if key in seen:
                raise BenchError(f"The SLO {text!r} names {key} twice; write it as {SLO_FORM}.")
            seen.add(key)
            value = float(number) / (1.0 if unit == "s" else 1000.0)
            if value <= 0:
                raise BenchError(f"The SLO target {part!r} must be above zero; write it as {SLO_FORM}.")
            setattr(slo, f"{key}_s", value)
        return slo

    @property
    def is_set(self) -> bool:
        return any(v is not None for v in (self.ttft_s, self.tpot_s, self.e2e_s))

    def describe(self) -> str:
        names = (("TTFT", self.ttft_s), ("TPOT", self.tpot_s), ("E2E", self.e2e_s))
        return ", ".join(f"{n} ≤ {v * 1000:g} ms" for n, v in names if v is not None) or "no SLO set"

    def met_by(self, sample: RequestSample) -> bool:
        """A completed request within every set target (TPOT is not checked for a one-token reply)."""
        if sample.error or sample.e2e_s is None:
            return False
        if self.ttft_s is not None and (sample.ttft_s is None or sample.ttft_s > self.ttft_s):
            return False
        if self.tpot_s is not None and sample.tpot_s is not None and sample.tpot_s > self.tpot_s:
            return False
        return self.e2e_s is None or sample.e2e_s <= self.e2e_s


@dataclass
class SweepPlan:
    url: str  # server URL, may end in "#model-id"
    levels: list[int]
    requests: int | None = 8  # per level ...
    duration_s: float | None = None  # ... or run each level this long (requests None)
    prompt_tokens: int = 30  # approximate: filler words, the request index first
    gen_tokens: int = 30  # max_tokens, with ignore_eos
    slo: Slo = field(default_factory=Slo)
    key_env: str = DEFAULT_KEY_ENV
    timeout_s: float = 120.0

    def validate(self) -> None:
        if not split_model(self.url or "")[0]:
            raise BenchError("Give the server's URL, e.g. http://127.0.0.1:8080 (optionally #model-id).")
        if not self.levels:
            raise BenchError("Give at least one concurrency level, e.g. 1,2,4.")
        bad = [lv for lv in self.levels if isinstance(lv, bool) or not isinstance(lv, int)
               or not 1 <= lv <= MAX_LEVEL]
        if bad:
            raise BenchError(f"Concurrency levels are whole numbers from 1 to {MAX_LEVEL}; got {bad}.")
        if (self.requests is None) == (self.duration_s is None):
            raise BenchError("Give either a number of requests per level or a duration per level "
                             f"({'not both' if self.requests is not None else 'neither was given'}).")
        if self.requests is not None and (isinstance(self.requests, bool) or not isinstance(self.requests, int)
                                          or self.requests < 1):
            raise BenchError(f"Requests per level must be a whole number of at least 1; got {self.requests}.")
        if self.duration_s is not None and not self.duration_s > 0:
            raise BenchError(f"The duration per level must be above zero seconds; got {self.duration_s}.")
        if self.prompt_tokens < 1 or self.gen_tokens < 1:
            raise BenchError("Prompt and reply lengths must be at least 1 token; got "
                             f"{self.prompt_tokens} and {self.gen_tokens}.")
        if not self.timeout_s > 0:
            raise BenchError(f"The read timeout must be above zero seconds; got {self.timeout_s}.")

    def prompt(self, index: int) -> str:
        """About prompt_tokens tokens once the chat template is added; the index first, so a server's
        prompt cache cannot serve a later request for free."""
        words = max(1, self.prompt_tokens - 10)
        return f"Request {index}: " + " ".join(FILLER[i % len(FILLER)] for i in range(words))


@dataclass
class RequestSample:
    level: int
    index: int
    start_s: float  # from the level's start
    ttft_s: float | None  # first content chunk
    e2e_s: float | None  # None when it failed
    output_tokens: int  # the server's usage count when sent, else content chunks
    prompt_tokens: int | None
    token_times_s: list[float]  # each content chunk's arrival, from the request's start
    error: str = ""
    server_timings: dict | None = None  # llama-server's "timings"

    @property
    def itl(self) -> list[float]:
        t = self.token_times_s
        return [b - a for a, b in zip(t, t[1:], strict=False)]

    @property
    def tpot_s(self) -> float | None:
        if self.e2e_s is None or self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


@dataclass
class SweepResult:
    plan: SweepPlan
    levels: list[LevelResult]
    knee: int | None  # the highest level meeting the SLO
    cancelled: bool
    stopped_reason: str
    model: str

    def to_dict(self) -> dict:
        levels = []
        for lr in self.levels:
            d = dataclasses.asdict(lr)
            for sd, s in zip(d["samples"], lr.samples, strict=True):
                sd["tpot_s"] = s.tpot_s
            levels.append(d)
        return {"kind": "load-sweep", "model": self.model, "url": api_base(self.plan.url),
                "plan": dataclasses.asdict(self.plan), "knee": self.knee, "cancelled": self.cancelled,
                "stopped_reason": self.stopped_reason, "levels": levels}


def _reason(exc: Exception) -> tuple[str, bool]:
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


class _ServerWatch:
    """CPU seconds (user + system) and peak RSS of the server process over one level."""

    def __init__(self, pid: int | None) -> None:
        import psutil

        self._errors = (psutil.Error, OSError)
        try:
            self.proc = psutil.Process(pid) if pid else None
        except self._errors:  # it ended meanwhile
            self.proc = None
        self.cpu_s: float | None = None
        self.rss_peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_rss, daemon=True, name="load-rss")

    def _rss(self) -> None:
        try:
            rss = self.proc.memory_info().rss  # type: ignore[union-attr]
        except self._errors:
            return
        self.rss_peak = max(self.rss_peak or 0, rss)

    def _sample_rss(self) -> None:
        while not self._stop.wait(RSS_EVERY_S):
            self._rss()

    def _cpu(self) -> float | None:
        try:
            t = self.proc.cpu_times()  # type: ignore[union-attr]
        except self._errors:
            return None
        return t.user + t.system

    def __enter__(self) -> _ServerWatch:
        if self.proc is not None:
            self._cpu0 = self._cpu()
            self._rss()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        self._stop.set()
        self._thread.join(timeout=2)
        self._rss()
        cpu1 = self._cpu()
        self.cpu_s = cpu1 - self._cpu0 if cpu1 is not None and self._cpu0 is not None else None


class _Level:
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

    def run(self, say: Callable[[str], None]) -> tuple[list[RequestSample], float]:
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
                stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
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
            s.error, lost = ("cancelled", False) if self.cancel.is_set() else _reason(exc)
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


def _pick_model(plan: SweepPlan) -> str:
    client = openai_client(plan.url, plan.key_env, min(plan.timeout_s, 30.0))
    try:
        ids = [m.id for m in client.models.list().data]
    except Exception as exc:
        raise BenchError(f"Cannot list the models of {api_base(plan.url)}: {_reason(exc)[0]}. Is the "
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


def run_sweep(plan: SweepPlan, progress: Callable[[str], None] | None = None,
              cancel: threading.Event | None = None,
              on_level: Callable[[LevelResult], None] | None = None) -> SweepResult:
    """Run every level in order. `progress` (a line) and `on_level` (each finished level, for a live
    chart) are called from this thread. Raises BenchError when the plan
    is invalid or the server does not list its models; a server that stops answering mid-sweep ends
    the sweep with `stopped_reason`, keeping the levels run so far."""
    plan.validate()
    cancel = cancel or threading.Event()
    say = progress or (lambda _line: None)
    model = _pick_model(plan)
    pid = server_pid(plan.url)
    result = SweepResult(plan, [], None, False, "", model)
    for level in plan.levels:
        if cancel.is_set():
            break
        say(f"concurrency {level}: starting")
        runner = _Level(plan, model, level, cancel)
        with _ServerWatch(pid) as watch:
            samples, duration = runner.run(say)
        result.levels.append(summarise(level, samples, duration, plan.slo, watch.cpu_s, watch.rss_peak))
        if on_level is not None:
            on_level(result.levels[-1])
        if runner.stop_reason and not cancel.is_set():
            result.stopped_reason = f"the server stopped answering at level {level}: {runner.stop_reason}"
            say(result.stopped_reason)
            break
    result.cancelled = cancel.is_set()
    result.knee = max((lr.level for lr in result.levels if lr.meets_slo), default=None)
    return result
