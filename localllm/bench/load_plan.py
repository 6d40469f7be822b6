"""What a load sweep runs and what it keeps: the plan (server, levels, lengths), the latency target
(SLO) and each request's raw sample."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from localllm.bench.errors import BenchError
from localllm.models.endpoints import DEFAULT_KEY_ENV, split_model

FILLER = "the quick brown fox jumps over a lazy dog by the river bank".split()
SLO_FORM = "ttft=500ms,tpot=50ms,e2e=2s (any of ttft, tpot, e2e; units ms or s, a bare number is ms)"
_SLO_ITEM = re.compile(r"^(ttft|tpot|e2e)\s*=\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?$")
MAX_LEVEL = 512


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
    gen_tokens: int = 30  # max_tokens, with ignore_eos and min_tokens
    slo: Slo = field(default_factory=Slo)
    key_env: str = DEFAULT_KEY_ENV
    timeout_s: float = 120.0
    server_counters: bool = True  # read the server's own counters (/metrics) before and after each level

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

