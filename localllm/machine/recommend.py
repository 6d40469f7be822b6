"""Rank (model, format, quant) picks for this machine and the user's wishes; pure: no I/O (what is
already on the disk comes in as `on_disk`, models.on_disk's match)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from localllm.machine.buffers import KV_BYTES
from localllm.machine.calibration import measured_here
from localllm.machine.estimate import MemoryEstimate, estimate_memory, estimate_speed
from localllm.machine.hardware import GiB, GPUInfo, HardwareInfo
from localllm.machine.quality import quality_index
from localllm.machine.weights import EstimateError
from localllm.models.catalog import ModelSpec
from localllm.models.on_disk import OnDisk

USES = ("chat", "quality", "speed")
CHAT_FILL = 512  # tokens in the context for the speed figure: a chat's first turns
DEFAULT_CPU_GB_S = 20.0  # until `localllm hw --bandwidth` has measured this machine
DEFAULT_GPU_GB_S = 300.0
NEEDS_CUDA = ("gptq", "bnb-nf4", "bnb-int8")


@dataclass(frozen=True)
class Wishes:
    context: int = 8192
    use: str = "chat"  # chat: good and readable (>= 10 tok/s); quality: best that runs; speed: fastest
    kv_type: str = "f16"
    margin: float = 0.10  # fraction of FREE memory left unused
    formats: tuple[str, ...] = ("gguf", "gptq", "bnb-nf4", "bnb-int8", "fp16")


@dataclass
class Pick:
    model: str
    name: str
    format: str
    quant: str
    verdict: str  # "full GPU" | "partial offload" | "CPU only" | "does not fit"
    gpu_layers: int
    ram_bytes: int
    vram_bytes: int
    tok_s: float  # the estimate (calibrated by runs on this machine when there are any) ...
    roofline_tok_s: float
    bits: float
    quality: float  # a relative index: size of the model, less what the quantization costs
    quality_hint: str
    score: float = 0.0
    why: str = ""
    source: str = ""  # the repo (and file) to download, or "embedded"
    download_bytes: int = 0
    needs_cuda: bool = False
    max_context: dict[str, int] = field(default_factory=dict)
    estimate: MemoryEstimate | None = None
    tok_s_band_pct: float = 30.0  # ... +- this many percent
    tok_s_full: float = 0.0  # decode with the whole context filled: the slowest a chat gets
    measured_tok_s: float | None = None  # decode measured on this machine for this very model and quant
    on_disk: bool = False  # the user has this very file already (in Ollama, LM Studio, the HF cache ...)
    sources: list[dict[str, Any]] = field(default_factory=list)  # where, when on_disk (each tool's name)
    ref: str = ""  # when on_disk: what `localllm chat -m` takes for that file

    @property
    def fits(self) -> bool:
        return self.verdict != "does not fit"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["estimate"] = self.estimate.to_dict() if self.estimate else None
        return data


@dataclass
class Fix:
    what: str
    pick: Pick


@dataclass
class Recommendation:
    wishes: Wishes
    picks: list[Pick]  # fitting, best first
    rejected: list[Pick]
    fixes: list[Fix]
    ram_budget: int
    vram_budget: int
    gpu: str
    notes: list[str] = field(default_factory=list)

    def top(self, n: int = 10, per_model: int | None = 2) -> list[Pick]:
        """The best n picks, at most per_model of any one model so the list shows choices (a pick
        already on the disk is shown whatever its model's count)."""
        out: list[Pick] = []
        seen: dict[str, int] = {}
        for pick in self.picks:
            if per_model is None or seen.get(pick.model, 0) < per_model or pick.on_disk:
                out.append(pick)
                seen[pick.model] = seen.get(pick.model, 0) + 1
            if len(out) >= n:
                break
        return out

    def on_disk_below(self, n: int = 10, per_model: int | None = 2) -> list[Pick]:
        """The fitting picks another tool already keeps on the disk that top(n) leaves out, best first:
        shown after it (the embedded model alone is not one: it is always there)."""
        shown = {id(p) for p in self.top(n, per_model)}
        return [p for p in self.picks if p.on_disk and id(p) not in shown
                and any(s.get("tool") != "embedded" for s in p.sources)]

    def best_per_format(self) -> dict[str, Pick]:
        """The best pick of each format: the cross-format comparison at a glance."""
        best: dict[str, Pick] = {}
        for pick in self.picks:
            best.setdefault(pick.format, pick)
        return best

    def to_dict(self, n: int | None = None, per_model: int | None = 2) -> dict[str, Any]:
        picks = self.top(n, per_model) + self.on_disk_below(n, per_model) if n else self.picks
        return {"wishes": dataclasses.asdict(self.wishes), "ram_budget": self.ram_budget,
                "vram_budget": self.vram_budget, "gpu": self.gpu, "notes": self.notes,
                "picks": [p.to_dict() for p in picks],
                "best_per_format": {f: p.to_dict() for f, p in self.best_per_format().items()},
                "fixes": [{"what": f.what, "pick": f.pick.to_dict()} for f in self.fixes]}


@dataclass(frozen=True)
class _Machine:
    ram: int
    vram: int
    gpu: GPUInfo | None
    cuda: bool
    unified: bool
    cpu_gb_s: float
    gpu_gb_s: float
    disk_free: int | None = None


def _machine(hw: HardwareInfo, margin: float) -> _Machine:
    gpus = sorted(hw.gpus, key=lambda g: g.free_bytes, reverse=True)
    gpu = gpus[0] if gpus else None
    return _Machine(ram=int(hw.memory.available_bytes * (1 - margin)),
                    vram=int(gpu.free_bytes * (1 - margin)) if gpu else 0, gpu=gpu,
                    cuda=bool(gpu and gpu.vendor == "nvidia"), unified=bool(gpu and gpu.unified_memory),
                    cpu_gb_s=hw.cpu_bandwidth_gb_s or DEFAULT_CPU_GB_S,
                    gpu_gb_s=(gpu.bandwidth_gb_s if gpu and gpu.bandwidth_gb_s else DEFAULT_GPU_GB_S),
                    disk_free=hw.disk.free_bytes if hw.disk else None)


def _fits(est: MemoryEstimate, m: _Machine) -> bool:
    if m.unified:  # one pool: the GPU share is part of RAM
        return est.vram_bytes <= m.vram and est.ram_bytes + est.vram_bytes <= m.ram
    return est.ram_bytes <= m.ram and est.vram_bytes <= m.vram


def _place(spec: ModelSpec, fmt: str, quant: str, ctx: int, kv: str, m: _Machine) -> tuple[str, MemoryEstimate]:
    """(verdict, estimate) at the best placement: all on the GPU, most layers on it, CPU, or nothing."""
    def est(g: int) -> MemoryEstimate:
        return estimate_memory(spec, fmt, quant, ctx, kv, g)

    if m.gpu is not None and (m.cuda or fmt == "gguf"):
        full = est(-1)
        if _fits(full, m):
            return "full GPU", full
        if fmt == "gguf":  # the most layers whose VRAM fits (VRAM grows with the layers)
            layers = _largest(lambda g: est(g).vram_bytes <= m.vram, 0, spec.layers)
            if layers and _fits(est(layers), m):
                return "partial offload", est(layers)
    cpu = est(0)
    return ("CPU only" if _fits(cpu, m) else "does not fit"), cpu


def _score(pick: Pick, use: str) -> float:
    if use == "speed":  # the fastest that is still useful: below ~2B parameters quality weighs in hard
        return pick.tok_s * min(1.0, pick.quality / 45) ** 3
    if use == "quality":  # the best that runs at all (2 tok/s is slow reading, but reading)
        slow: float = min(1.0, pick.tok_s / 2) ** 0.5  # (float ** float is typed Any: it may be complex)
        return pick.quality * slow
    # chat: quality at reading speed (~10 tok/s), and a little credit for speed up to 40 tok/s
    return pick.quality * min(1.0, pick.tok_s / 10) + 2 * math.log2(max(1.0, min(pick.tok_s, 40) / 10))


def _candidates(spec: ModelSpec, formats: tuple[str, ...],
                on_disk: Mapping[tuple[str, str], OnDisk]) -> Iterator[tuple[str, str, str, int | None]]:
    """(format, quant, where to get it, download bytes or None to use the estimate's weights); a quant
    the user has on the disk is a candidate even when the catalog lists other quants only."""
    if "gguf" in formats:
        if spec.embedded:
            yield "gguf", spec.embedded, "embedded (ships with localllm)", 0
        for quant in spec.gguf_quants:
            yield "gguf", quant, f"{spec.gguf_repo}/{spec.gguf_filename(quant)}", None
        listed = {q.upper() for q in (*spec.gguf_quants, spec.embedded) if q}
        for (model, quant), found in sorted(on_disk.items()):
            if model == spec.id and quant not in listed:
                yield "gguf", quant, found.ref, 0
        if spec.gguf_path:
            yield "gguf", spec.gguf_quant, spec.gguf_path, 0
    if spec.gptq_repo and "gptq" in formats:
        yield "gptq", "4bit-g128", spec.gptq_repo, None
    if spec.fp16_repo:
        fp16_download = spec.params * 2  # bnb quantizes the original at load: the download is fp16
        for fmt, quant in (("bnb-nf4", "nf4"), ("bnb-int8", "int8"), ("fp16", "fp16")):
            if fmt in formats:
                yield fmt, quant, spec.fp16_repo, fp16_download


def _pick(spec: ModelSpec, fmt: str, quant: str, source: str, download: int | None, wishes: Wishes,
          m: _Machine, found: OnDisk | None = None) -> Pick:
    kv = wishes.kv_type if fmt == "gguf" else "f16"
    verdict, est = _place(spec, fmt, quant, wishes.context, kv, m)
    # the headline figure is a chat's first turns (what a timing run measures too); a full context's
    # KV reads slow it, which the second figure says
    speed = estimate_speed(spec, est, m.cpu_gb_s, m.gpu_gb_s, fill=min(CHAT_FILL, wishes.context))
    full = estimate_speed(spec, est, m.cpu_gb_s, m.gpu_gb_s, fill=wishes.context)
    quality, hint = quality_index(spec, fmt, quant)
    pick = Pick(spec.id, spec.name, fmt, quant, verdict, est.gpu_layers, est.ram_bytes, est.vram_bytes,
                round(speed.tok_s, 1), round(speed.roofline_tok_s, 1), est.bits_per_weight,
                round(quality, 1), hint, source=source, estimate=est, needs_cuda=fmt in NEEDS_CUDA,
                download_bytes=est.weight_bytes if download is None else download)
    pick.tok_s_band_pct = speed.band_pct
    pick.tok_s_full = round(full.tok_s, 1)
    pick.measured_tok_s = measured_here(spec.name, fmt, quant, speed.device)
    pick.score = _score(pick, wishes.use) if pick.fits else 0.0
    if found is not None:
        pick.on_disk, pick.download_bytes = True, 0
        pick.sources = [s.to_dict() for s in found.sources]
        pick.ref = found.ref
    pick.why = _why(pick, spec, m, found)
    return pick


def speed_text(p: Pick) -> str:
    """"~95 tok/s +-30%", and what was measured here when this model ran on this machine."""
    def rate(x: float) -> str:
        return f"{x:.0f}" if x >= 10 else f"{x:.1f}"

    text = f"~{rate(p.tok_s)} tok/s ±{p.tok_s_band_pct:.0f}%"
    if p.tok_s_full and p.tok_s_full < 0.9 * p.tok_s:
        text += f" ({rate(p.tok_s_full)} with the context full)"
    return text + (f", {rate(p.measured_tok_s)} measured here" if p.measured_tok_s else "")


def _why(p: Pick, spec: ModelSpec, m: _Machine, found: OnDisk | None = None) -> str:
    gpu = m.gpu.name if m.gpu else "GPU"
    where = {"full GPU": f"fits on the {gpu} ({p.vram_bytes / GiB:.1f} of {m.vram / GiB:.1f} GiB usable)",
             "partial offload": (f"{p.gpu_layers} of {spec.layers} layers on the {gpu}" if p.gpu_layers < spec.layers
                                 else f"all {spec.layers} layers on the {gpu}, the output head in RAM")
                                + f" ({p.vram_bytes / GiB:.1f} GiB VRAM, {p.ram_bytes / GiB:.1f} GiB RAM)",
             "CPU only": f"runs from RAM ({p.ram_bytes / GiB:.1f} of {m.ram / GiB:.1f} GiB usable)",
             "does not fit": f"needs {p.ram_bytes / GiB:.1f} GiB RAM"
                             + (f" + {p.vram_bytes / GiB:.1f} GiB VRAM" if p.vram_bytes else "")
                             + f", {m.ram / GiB:.1f} GiB usable"}[p.verdict]
    parts = [where, f"{speed_text(p)} ({p.bits:.2f} bits/weight, {p.quality_hint})"]
    if p.needs_cuda and not m.cuda:
        parts.append("slow here: needs CUDA for its kernels")
    if m.disk_free is not None and p.download_bytes > m.disk_free:
        parts.append(f"the download ({p.download_bytes / 1e9:.1f} GB) is more than the "
                     f"{m.disk_free / 1e9:.1f} GB free on disk")
    if p.source.startswith("embedded"):
        parts.append("ships with localllm: chat now")
    if found is not None and any(s.tool != "embedded" for s in found.sources):
        parts.append(f"on disk ({found.label}), no download")
    return "; ".join(parts)


def _largest(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest n in [lo, hi] with ok(n), for ok true up to some point and false after; lo if none."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def max_context(spec: ModelSpec, pick: Pick, m: _Machine) -> dict[str, int]:
    """The largest context (multiple of 256) that keeps this pick's placement, per KV-cache type."""
    out: dict[str, int] = {}
    for kv in (KV_BYTES if pick.format == "gguf" else ("f16",)):
        def ok(blocks: int, kv: str = kv) -> bool:
            est = estimate_memory(spec, pick.format, pick.quant, blocks * 256, kv, pick.gpu_layers)
            return _fits(est, m)

        out[kv] = min(spec.max_context, 256 * _largest(ok, 0, spec.max_context // 256))
    return out


def recommend(hw: HardwareInfo, catalog: tuple[ModelSpec, ...] | list[ModelSpec],
              wishes: Wishes | None = None, detail: int = 20,
              on_disk: Mapping[tuple[str, str], OnDisk] | None = None) -> Recommendation:
    """Every (model, format, quant) of the catalog graded on this machine; the best `detail` picks also
    get their largest context per KV-cache type. on_disk: (catalog id, quant) -> the file the user
    has (models.on_disk.match): those picks need no download and say where they are."""
    on_disk = on_disk or {}
    wishes = wishes or Wishes()
    if wishes.use not in USES:
        raise EstimateError(f"unknown use {wishes.use!r}; choose one of {', '.join(USES)}")
    m = _machine(hw, wishes.margin)
    picks: list[Pick] = []
    rejected: list[Pick] = []
    notes: list[str] = []
    for spec in catalog:
        if wishes.context > spec.max_context:
            continue  # the model cannot hold the wished context at all
        for fmt, quant, source, download in _candidates(spec, wishes.formats, on_disk):
            found = on_disk.get((spec.id, quant.upper())) if fmt == "gguf" else None
            try:
                pick = _pick(spec, fmt, quant, source, download, wishes, m, found)
            except EstimateError:  # a quant on the disk that the estimate does not know
                if source == (found.ref if found else None):
                    continue
                raise
            (picks if pick.fits else rejected).append(pick)
    # bnb and GPTQ without CUDA go last whatever their score; on ties what is on the disk, then GGUF
    # first: it runs everywhere
    picks.sort(key=lambda p: (not (p.needs_cuda and not m.cuda), p.score, p.on_disk, p.format == "gguf",
                              -p.bits if wishes.use == "speed" else p.bits), reverse=True)
    by_id = {s.id: s for s in catalog}
    rec = Recommendation(wishes, picks, rejected, [], m.ram, m.vram, m.gpu.name if m.gpu else "", notes)
    shown = rec.top(detail) + rec.top(detail, None) + [p for p in picks if p.on_disk]
    for pick in {id(p): p for p in shown}.values():  # the ones shown
        pick.max_context = max_context(by_id[pick.model], pick, m)
    if not m.cuda:
        notes.append("no CUDA GPU: bnb and GPTQ run on the CPU only slowly; GGUF (llama.cpp) comes first")
    if hw.cpu_bandwidth_gb_s is None:
        notes.append(f"CPU memory bandwidth not measured yet ({DEFAULT_CPU_GB_S:.0f} GB/s assumed): "
                     "run `localllm hw --bandwidth`")
    rec.fixes = [] if picks else suggest_fixes(catalog, wishes, m, hw)
    return rec


def suggest_fixes(catalog: tuple[ModelSpec, ...] | list[ModelSpec], wishes: Wishes, m: _Machine, hw: HardwareInfo) -> list[Fix]:
    """Nothing fits: what would, each with its new estimate."""
    fixes: list[Fix] = []
    smallest = sorted(catalog, key=lambda s: s.params)
    for kv in ("q8_0", "q4_0"):  # a quantized KV cache shrinks what grows with the context
        for spec in smallest:
            if wishes.context <= spec.max_context and spec.gguf_quants:
                alt = dataclasses.replace(wishes, kv_type=kv)
                pick = _pick(spec, "gguf", spec.gguf_quants[0], spec.gguf_repo, None, alt, m)
                if pick.fits:
                    fixes.append(Fix(f"use a {kv} KV cache: {spec.name} {pick.quant} then fits", pick))
                    break
        if fixes:
            break
    for spec in smallest:  # a shorter context
        if not spec.gguf_quants:
            continue
        base = _pick(spec, "gguf", spec.gguf_quants[0], spec.gguf_repo, None,
                     dataclasses.replace(wishes, context=256), m)
        if base.fits:
            base.max_context = max_context(spec, base, m)
            ctx = base.max_context.get(wishes.kv_type, 256)
            pick = _pick(spec, "gguf", spec.gguf_quants[0], spec.gguf_repo, None,
                         dataclasses.replace(wishes, context=max(256, ctx)), m)
            fixes.append(Fix(f"shorten the context to {ctx} tokens: {spec.name} {pick.quant} fits", pick))
            break
    for gpu in hw.gpus:  # memory other programs hold
        for proc in gpu.processes[:3]:
            if proc.used_bytes:
                freed = dataclasses.replace(m, vram=m.vram + int(proc.used_bytes * (1 - wishes.margin)))
                for spec in smallest:
                    if wishes.context <= spec.max_context and spec.gguf_quants:
                        pick = _pick(spec, "gguf", spec.gguf_quants[0], spec.gguf_repo, None, wishes, freed)
                        if pick.fits:
                            fixes.append(Fix(f"close {proc.name} (pid {proc.pid}, {proc.used_bytes / GiB:.1f} "
                                             f"GiB VRAM): {spec.name} then fits", pick))
                            break
    if not fixes:  # say what the smallest option needs
        spec = smallest[0]
        quant = spec.gguf_quants[0] if spec.gguf_quants else "Q2_K"
        pick = _pick(spec, "gguf", quant, spec.gguf_repo, None, dataclasses.replace(wishes, context=256), m)
        fixes.append(Fix(f"nothing fits even at 256 tokens: the smallest, {spec.name} {quant}, needs "
                         f"{(pick.ram_bytes + pick.vram_bytes) / GiB:.1f} GiB; free memory, or use a "
                         "machine with more", pick))
    return fixes
