"""A timing plan: its configurations (one row each: a model and how it loads), the prompt lengths,
repetitions and presets, the prompt sets, and the progress a running plan reports. What the runner
(runs.py) and one configuration's worker (worker.py) share."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localllm.bench.errors import BenchError
from localllm.config import AUTO_LAYERS, PACKAGE_DATA
from localllm.models.embedded import EMBEDDED
from localllm.models.ref import ModelRef
from localllm.runtime.figures import rate, seconds

if TYPE_CHECKING:
    from localllm.runtime.metrics import ReplyStats

DATA = PACKAGE_DATA
# name: (prompt tokens, new tokens, prompt set); llama-bench's pp512/tg128 and seed 002's 30/30
PRESETS: dict[str, tuple[int, int, str]] = {
    "seed002": (30, 30, "short"),
    "llama-bench": (512, 128, "long"),
}


@dataclass
class BenchConfig:
    """One row of the plan: a model and how it is loaded."""

    model: str = EMBEDDED  # a path, or the embedded model's name
    backend: str = "llama_cpp"
    quant: str = ""  # a label; empty: what the file says
    load_in: str = "none"  # transformers checkpoints: none | int8 | nf4 | fp4 (bitsandbytes at load)
    n_threads: int = 0  # 0: physical cores
    n_gpu_layers: int = AUTO_LAYERS  # placed by the load plan unless given
    n_ctx: int = 2048
    label: str = ""
    # 0: one streamed chat reply per repetition (TTFT, per-token timestamps). B >= 1: B prompts of the
    # plan's length generated together (seed 002's batch column): latency = time per decode step,
    # throughput = B x tokens / decode time
    batch: int = 0
    depth: int = 0  # tokens already in the context before the measured reply (llama-bench's -d)
    kv_type: str = "f16"  # llama.cpp's KV cache: f16 | q8_0 | q4_0

    def path(self) -> str:
        return ModelRef.parse(self.model).path

    def default_label(self) -> str:
        name = ModelRef.parse(self.model).name
        extra = [f"bnb {self.load_in}" if self.load_in != "none" else "",
                 f"{self.n_threads} thread{'s' if self.n_threads > 1 else ''}" if self.n_threads else "",
                 f"{self.n_gpu_layers} GPU layers" if self.n_gpu_layers > 0 else
                 "all GPU layers" if self.n_gpu_layers == -1 else ""]
        if self.backend == "remote":
            extra = []  # threads and GPU layers are the server's own business
        extra += [f"batch {self.batch}" if self.batch else "", f"depth {self.depth}" if self.depth else "",
                  f"KV {self.kv_type}" if self.kv_type != "f16" and self.backend == "llama_cpp" else ""]
        return " · ".join([name, *filter(None, extra)])


@dataclass
class BenchPlan:
    configs: list[BenchConfig] = field(default_factory=list)
    prompt_tokens: int = 30  # of the rendered chat prompt, template included
    gen_tokens: int = 30
    reps: int = 5
    warmup: int = 1
    seed: int = 42
    prompts: str = "short"  # a built-in set ("short", "long") or a file
    preset: str = ""
    perplexity: bool = False
    perplexity_text: str | None = None  # None: the shipped text (data/perplexity.txt)

    @classmethod
    def from_preset(cls, name: str, configs: list[BenchConfig], **changes) -> BenchPlan:
        if name not in PRESETS:
            raise BenchError(f"Unknown preset {name!r}; known: {', '.join(PRESETS)}.")
        prompt, gen, prompts = PRESETS[name]
        values: dict[str, Any] = {"prompt_tokens": prompt, "gen_tokens": gen, "prompts": prompts, "preset": name}
        values.update({k: v for k, v in changes.items() if v is not None})
        return cls(configs=configs, **values)

    def validate(self) -> None:
        if not self.configs:
            raise BenchError("The plan has no configuration; add at least one model (-m PATH or -m embedded).")
        if self.reps < 1:
            raise BenchError(f"Repetitions must be at least 1 (got {self.reps}): with none there is "
                             "nothing to measure. Use --reps 1 or more (default 5).")
        if self.warmup < 0:
            raise BenchError(f"Warm-up runs cannot be negative (got {self.warmup}).")
        if self.gen_tokens < 2:
            raise BenchError(f"Generate at least 2 tokens (got {self.gen_tokens}): decode speed is "
                             "measured after the first token.")
        if self.prompt_tokens < 1:
            raise BenchError(f"The prompt needs at least 1 token (got {self.prompt_tokens}).")
        for cfg in self.configs:
            if cfg.batch < 0 or cfg.depth < 0:
                raise BenchError(f"Batch and depth cannot be negative (got batch {cfg.batch}, depth {cfg.depth}).")
            if cfg.batch and cfg.depth:
                raise BenchError("--depth measures one streamed reply; run it without --batch.")
            if cfg.batch and cfg.backend == "remote":
                raise BenchError("A server batches requests itself: use --concurrency against it, not --batch.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class PromptSet:
    system: str
    prompts: list[str]
    filler: str  # padding when a prompt is shorter than the plan's prompt length

    def texts(self) -> list[str]:
        return [self.system, self.filler, *self.prompts]


def load_prompts(source: str) -> PromptSet:
    """A built-in set from prompts.toml, or a file: TOML with `prompts = [...]`, or plain text
    with one prompt per paragraph (blank lines between)."""
    builtin = tomllib.loads((DATA / "prompts.toml").read_text(encoding="utf-8"))
    system, filler = builtin["system"], " ".join(builtin["filler"].split())
    if source in builtin["sets"]:
        return PromptSet(system, list(builtin["sets"][source]), filler)
    path = Path(source).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"Cannot read the prompt file {path}: {exc.strerror or exc}. Built-in sets: "
                         f"{', '.join(builtin['sets'])}.") from None
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
            prompts = [str(p) for p in data["prompts"]]
        except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
            raise BenchError(f"{path} must hold `prompts = [\"...\", ...]` ({exc}).") from None
        system = str(data.get("system", system))
    else:
        prompts = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    if not prompts:
        raise BenchError(f"The prompt file {path} holds no prompt.")
    return PromptSet(system, prompts, filler)


@dataclass
class Progress:
    """What a plan is doing now; str() is a progress line for the CLI."""

    index: int  # configuration, from 0
    total: int
    label: str
    phase: str  # start | loaded | warmup | rep | perplexity | done | failed | cancelled | skipped
    rep: int = 0  # from 1, for warmup/rep
    reps: int = 0
    stats: ReplyStats | None = None  # ReplyStats of the rep just finished
    message: str = ""

    def __str__(self) -> str:
        head = f"[{self.index + 1}/{self.total}] {self.label}"
        what = "warm-up" if self.phase == "warmup" else "rep"
        if self.phase in ("warmup", "rep"):
            s = self.stats
            if s is None:  # a batch run: its own summary
                return f"{head} · {what} {self.rep}/{self.reps} · {self.message}"
            return (f"{head} · {what} {self.rep}/{self.reps} · decode {rate(s.decode_tok_s)} · "
                    f"TTFT {seconds(s.ttft_s)} · wall {seconds(s.wall_s)}")
        return f"{head} · {self.phase}" + (f": {self.message}" if self.message else "")


ProgressFn = Callable[[Progress], None]
