"""Benchmark results: rows, per-column statistics, the run manifest, save/load and compare."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from localllm.config.redact import redact
from localllm.runtime.metrics import percentile


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    unit: str = ""
    optional: bool = False  # shown only when some row has a value (VRAM, perplexity)


# The row columns in table order; every one is a Summary over the measured repetitions.
COLUMNS: tuple[Column, ...] = (
    Column("load_s", "load", "s"),
    Column("ttft_ms", "TTFT", "ms"),
    Column("prefill_tok_s", "prefill", "tok/s"),
    Column("decode_tok_s", "decode", "tok/s"),
    Column("latency_mean_ms", "tok latency mean", "ms"),
    Column("latency_p50_ms", "tok latency p50", "ms"),
    Column("latency_p90_ms", "tok latency p90", "ms"),
    Column("wall_s", "wall", "s"),
    Column("cpu_user_s", "CPU user", "s"),
    Column("cpu_sys_s", "CPU sys", "s"),
    Column("cpu_total_s", "CPU total", "s"),
    Column("cpu_per_wall", "CPU/wall"),
    Column("rss_peak_mib", "peak RSS", "MiB"),
    Column("vram_peak_mib", "peak VRAM", "MiB", optional=True),
    Column("size_mib", "size", "MiB"),
    Column("bw_pct", "decode % of BW limit"),
    Column("perplexity", "perplexity", optional=True),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)


@dataclass
class Summary:
    """One column of one row: mean ± stddev over the repetitions, and their p50/p90."""

    mean: float | None = None
    sd: float | None = None  # None with fewer than 2 values: never a made-up 0
    n: int = 0
    p50: float | None = None
    p90: float | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: list[float | None]) -> Summary:
        vals = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not vals:
            return cls()
        return cls(mean=statistics.fmean(vals), sd=statistics.stdev(vals) if len(vals) > 1 else None,
                   n=len(vals), p50=percentile(vals, 50), p90=percentile(vals, 90),
                   min=min(vals), max=max(vals))


@dataclass
class RowResult:
    """One configuration: what ran, every repetition's numbers, and why it failed if it did."""

    label: str
    config: dict
    status: str = "ok"  # ok | failed | cancelled (kept reps) | skipped (never started)
    reason: str = ""
    model: dict = field(default_factory=dict)  # ModelInfo of the loaded model
    size_bytes: int | None = None
    bits_per_weight: float | None = None
    prompt_tokens: int | None = None  # of the rendered chat prompt, template included
    gen_tokens: int = 0
    prompt_sha256: str = ""  # of the fitted prompts this row really sent
    first_load_s: float | None = None  # the warm-up's load: a cold page cache shows here
    rss_hwm_mib: float | None = None  # the worker's own peak RSS over its whole life (VmHWM)
    perplexity: dict | None = None  # {"ppl", "tokens", "chunks", "n_ctx"} or {"error": ...}
    reps: list[dict] = field(default_factory=list)  # measured repetitions: ReplyStats + load_s
    notes: list[str] = field(default_factory=list)
    columns: dict[str, Summary] = field(default_factory=dict)

    @property
    def quant(self) -> str:
        return self.model.get("quant") or self.config.get("quant") or "-"

    def summarize(self, bandwidth_bytes_s: float | None) -> None:
        """Fill `columns` from the repetitions (and the per-configuration values)."""
        spec = self._gguf_spec() if bandwidth_bytes_s else None
        for rep in self.reps:
            rep["ttft_ms"] = rep["ttft_s"] * 1000 if rep.get("ttft_s") is not None else None
            rate = rep.get("decode_tok_s")
            steps_s = rate / rep.get("batch", 1) if rate else None  # a batch step makes one token per sequence
            # per-token latency: the mean gap of one stream, or a batch's mean step (seed 002's meaning)
            rep["latency_mean_ms"] = rep.get("step_ms") or (1000 / rate if rate else None)
            limit = self._step_limit(rep, spec, bandwidth_bytes_s) if steps_s and bandwidth_bytes_s else None
            rep["bw_pct"] = 100 * steps_s / limit if steps_s and limit else None
        once = {"size_mib": self.size_bytes / 2**20 if self.size_bytes else None,
                "perplexity": (self.perplexity or {}).get("ppl")}
        self.columns = {key: Summary.of([once[key]] if key in once else [r.get(key) for r in self.reps])
                        for key in COLUMN_KEYS}

    def _gguf_spec(self):
        """The shape of the row's model from its GGUF header (llama.cpp rows), else None."""
        if self.model.get("backend") != "llama_cpp" or not self.model.get("path"):
            return None
        from localllm.models.catalog import ModelSpec

        try:
            return ModelSpec.from_gguf(self.model["path"])
        except Exception:  # the file went away since the run: the file-size roofline below
            return None

    def _step_limit(self, rep: dict, spec, bandwidth_bytes_s: float) -> float | None:
        """Decode steps per second no run of this row can beat, the chat panel's "BW limit" too
        (machine.estimate.decode_roofline: the weights a step reads and each sequence's KV cache at the
        rep's fill). Without a GGUF's tensor table (a server, a checkpoint), the file's size per step."""
        if spec is not None:
            from localllm.machine.estimate import decode_roofline, gguf_as_loaded

            m, extra = self.model, self.model.get("extra") or {}
            fill = (rep.get("prompt_tokens") or self.prompt_tokens or 0) + (rep.get("completion_tokens") or 0) // 2
            try:
                est = gguf_as_loaded(spec, m["n_ctx"], m.get("n_gpu_layers") or 0, extra.get("kv_type", "f16"),
                                     extra.get("extra_bufts", True), fill)
                return decode_roofline(spec, est, bandwidth_bytes_s / 1e9, None, fill, rep.get("batch", 1)) or None
            except Exception:  # a shape the estimator does not know: the file-size roofline
                pass
        return bandwidth_bytes_s / self.size_bytes if self.size_bytes else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RowResult:
        data = dict(data)
        columns = {k: Summary(**v) for k, v in data.pop("columns", {}).items()}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names}, columns=columns)


@dataclass
class BenchResult:
    manifest: dict
    rows: list[RowResult] = field(default_factory=list)
    cancelled: bool = False

    def to_dict(self) -> dict:
        return {"manifest": self.manifest, "cancelled": self.cancelled,
                "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, data: dict) -> BenchResult:
        return cls(manifest=data["manifest"], cancelled=bool(data.get("cancelled")),
                   rows=[RowResult.from_dict(r) for r in data["rows"]])

    def present_columns(self) -> list[Column]:
        """The columns to show: optional ones only where some row has a value."""
        return [c for c in COLUMNS
                if not c.optional or any(r.columns.get(c.key, Summary()).n for r in self.rows)]


# -- manifest ---------------------------------------------------------------------------------
def prompt_hash(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> dict:
    """NVIDIA GPUs, driver and CUDA version (localllm.machine.hardware reads NVML); no GPU is the normal CPU case."""
    from types import SimpleNamespace

    from localllm.machine.hardware import probe_nvidia

    info = SimpleNamespace(gpus=[], gpu_reason=None, driver_version=None, cuda_version=None)
    probe_nvidia(info)  # type: ignore[arg-type]  # duck-typed: it sets only these four fields
    out = {"gpus": [{"name": g.name, "vram_mib": g.total_bytes / 2**20} for g in info.gpus],
           "driver": info.driver_version, "cuda": info.cuda_version}
    if not info.gpus:
        out["gpu_note"] = info.gpu_reason or "no NVIDIA GPU"
    return out


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def build_manifest(plan: dict, prompts: list[str], bandwidth_bytes_s: float | None) -> dict:
    """Everything needed to tell two runs apart: hardware, versions, the plan, seed, prompts, date."""
    import psutil

    from localllm import __version__

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "hardware": {"cpu": _cpu_model(), "cores_physical": psutil.cpu_count(logical=False),
                     "cores_logical": psutil.cpu_count(), "ram_gib": psutil.virtual_memory().total / 2**30,
                     "memory_bandwidth_gb_s": bandwidth_bytes_s / 1e9 if bandwidth_bytes_s else None,
                     **_gpus()},
        "software": {"localllm": __version__, "llama_cpp_python": _version("llama-cpp-python"),
                     "python": platform.python_version(), "platform": platform.platform(),
                     "executable": sys.executable},
        "plan": plan,
        "seed": plan.get("seed"),
        "prompt_sha256": prompt_hash(prompts),
    }


# -- save, load, compare ------------------------------------------------------------------------
def bench_dir() -> Path:
    from localllm import config

    path = config.home() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(result: BenchResult, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the result as JSON (default: <home>/bench/<timestamp>.json), atomically."""
    return write_json(result.to_dict(), path)


def write_json(data: dict, path: str | os.PathLike[str] | None = None, prefix: str = "") -> Path:
    """Write a run atomically; without a path, a new <home>/bench/<prefix><timestamp>[-n].json."""
    from localllm.config import state

    text = json.dumps(redact(data), indent=1, ensure_ascii=False)
    if path is not None:
        return state.write_text(path, text)
    # The folder first, outside the loop: a file where it should be is FileExistsError too, and must
    # not be taken for a name already claimed (that looped forever).
    folder, stamp, n = bench_dir(), prefix + time.strftime("%Y%m%d-%H%M%S"), 1
    while True:  # a name no other run (of this or another instance, this same second) has claimed
        try:
            return state.write_text(folder / (f"{stamp}.json" if n == 1 else f"{stamp}-{n}.json"),
                                    text, replace=False)
        except FileExistsError:
            n += 1


def load(path: str | os.PathLike[str]) -> BenchResult:
    from localllm.errors import LocalLLMError

    try:
        return BenchResult.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as exc:
        raise LocalLLMError(f"Cannot read the benchmark results {path}: {exc.strerror}.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LocalLLMError(f"{path} is not a localllm bench result ({type(exc).__name__}: {exc}).") from None


@dataclass
class Delta:
    label: str
    column: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return self.b - self.a if self.a is not None and self.b is not None else None

    @property
    def pct(self) -> float | None:
        return self.delta / abs(self.a) * 100 if self.delta is not None and self.a else None


def compare(a: BenchResult, b: BenchResult) -> list[Delta]:
    """Per-column changes from run a to run b, for the rows (by label) both have."""
    old = {r.label: r for r in a.rows}
    out = []
    for row in b.rows:
        base = old.get(row.label)
        if base is None:
            continue
        for key in COLUMN_KEYS:
            x, y = base.columns.get(key, Summary()).mean, row.columns.get(key, Summary()).mean
            if x is not None or y is not None:
                out.append(Delta(row.label, key, x, y))
    return out
