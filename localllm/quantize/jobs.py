"""Quantization jobs as `localllm quantize` and the TUI run them: a plan checked before anything runs
(target type, disk, memory: a job that would not fit is refused with the numbers), the job itself in a
child process (cancel kills it; nothing half-written is left), then a record of how the result was
made, written beside it, and the result added to the library as a normal, reloadable model.

Targets: a GGUF type (llama.cpp's quantizer), `safetensors` (a full-precision checkpoint dequantized
from a GGUF by transformers, so bitsandbytes and GPTQ can start from it) and `gptq` (GPTQModel, run
by the Python of its own environment: see localllm.runtime.gptq_env).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from localllm import config
from localllm.config import state
from localllm.quantize.gguf import Progress, QuantizeCancelled, QuantizeError, parse_qtype, requantize_gguf

GiB = 1024**3
SAFETENSORS = "safetensors"
GPTQ = "gptq"
RECORD_SUFFIX = ".localllm.json"  # beside a file: model.gguf.localllm.json; in a folder: localllm.json
DISK_MARGIN = 1.10  # estimates are close, not exact: ask for 10% more than predicted
RAM_MARGIN = 1.20


@dataclass
class GPTQOptions:
    bits: int = 4
    group_size: int = 128
    desc_act: bool = False  # act-order
    sym: bool = True
    calibration_samples: int = 64


@dataclass
class JobPlan:
    src: str
    target: str  # a GGUF type name, "safetensors" or "gptq"
    kind: str  # "gguf" | "dequantize" | "gptq"
    out: Path
    n_params: int
    disk_bytes: int  # predicted size of the result
    ram_bytes: int  # predicted peak memory of the job
    free_disk_bytes: int
    free_ram_bytes: int
    gptq: GPTQOptions | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"{Path(self.src).name} -> {self.out} ({self.target}): needs ~{self.disk_bytes / GiB:.2f} GiB "
                f"of disk ({self.free_disk_bytes / GiB:.1f} free) and ~{self.ram_bytes / GiB:.2f} GiB of RAM "
                f"({self.free_ram_bytes / GiB:.1f} available)")


@dataclass
class JobResult:
    path: Path
    seconds: float
    record: dict
    library_id: str
    stale_removed: list[str] = field(default_factory=list)  # what a killed earlier run had left


def quant_results_dir() -> Path:
    """Where quantization results go unless the user names a path."""
    return config.home() / "models"


def record_path(out: Path) -> Path:
    return out / "localllm.json" if out.is_dir() else out.with_name(out.name + RECORD_SUFFIX)


def read_record(out: str | os.PathLike[str]) -> dict | None:
    return state.read_json(record_path(Path(out))) or None


# -- sizes ---------------------------------------------------------------------------------------
def safetensors_params(folder: Path) -> int:
    """Parameters of a safetensors checkpoint, from the files' headers (no weights are read)."""
    total = 0
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        for name, meta in header.items():
            if name != "__metadata__":
                n = 1
                for d in meta["shape"]:
                    n *= d
                total += n
    return total


def _free_disk(folder: Path) -> int:
    target = folder
    while not target.exists() and target != target.parent:
        target = target.parent
    return shutil.disk_usage(target).free


def _free_ram() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


# -- plan ----------------------------------------------------------------------------------------
def _resolve_src(src: str) -> str:
    from localllm.models.ref import ModelRef

    return str(Path(ModelRef.parse(src).path).absolute())


def default_output(src: str, target: str) -> Path:
    stem = Path(src).name.removesuffix(".gguf")
    for label in ("Q4_1", "Q4_0", "Q8_0", "F16", "BF16", "F32", "Q4_K_M", "Q5_K_M", "Q6_K"):
        stem = stem.removesuffix("." + label).removesuffix("-" + label)
    if target == SAFETENSORS:
        return quant_results_dir() / f"{stem}-fp32"
    if target == GPTQ:
        return quant_results_dir() / f"{stem}-gptq"
    return quant_results_dir() / f"{stem}.{target}.gguf"


def plan_job(src: str, target: str, out: str | os.PathLike[str] | None = None,
             gptq: GPTQOptions | None = None, allow_requantize: bool = True) -> JobPlan:
    """Check everything that can be checked before a job runs; QuantizeError says what is wrong."""
    from localllm.models.stores import is_store_ref

    named = src.partition(":")[2].replace(":", "-").replace("/", "-") if is_store_ref(src) else ""
    src = _resolve_src(src)  # ollama:NAME is a blob named sha256-<hex>: the output is named after NAME
    target = target.strip()
    lowered = target.lower()
    if lowered in (SAFETENSORS, "fp32", "full"):
        kind, target = "dequantize", SAFETENSORS
    elif lowered == GPTQ:
        kind, target = "gptq", GPTQ
    else:
        kind, target = "gguf", parse_qtype(target)[0]
    out_path = Path(out).expanduser().absolute() if out else default_output(named or src, target)
    if out_path.exists():
        raise QuantizeError(f"{out_path} exists already; choose another output or remove it first.")
    if kind in ("gguf", "dequantize"):
        from localllm.models.gguf_check import inspect_gguf

        info = inspect_gguf(src)  # a missing or damaged source is refused here, with its reason
        n_params, src_bytes = info.n_params, info.size_bytes
        if kind == "gguf" and not allow_requantize and info.quant not in ("F32", "F16", "BF16"):
            raise QuantizeError(f"{src} is already quantized ({info.quant}); allow re-quantization to go on.")
    else:
        n_params, src_bytes = _gptq_source(src), 0
    plan = JobPlan(src, target, kind, out_path, n_params, 0, 0, _free_disk(out_path.parent), _free_ram(),
                   gptq=(gptq or GPTQOptions()) if kind == "gptq" else None)
    _size_job(plan, src_bytes)
    if kind == "gptq":
        _check_gptq(plan)
    if plan.disk_bytes * DISK_MARGIN > plan.free_disk_bytes:
        raise QuantizeError(f"Not enough disk: {plan.describe()}. Free some space or choose another output.")
    if plan.ram_bytes * RAM_MARGIN > plan.free_ram_bytes:
        raise QuantizeError(f"Not enough memory: {plan.describe()}. Close other programs or use a "
                            "smaller model.")
    return plan


def _size_job(plan: JobPlan, src_bytes: int) -> None:
    from localllm.models.quants import BITS_PER_WEIGHT as GGUF_BPW

    n = plan.n_params
    if plan.kind == "gguf":
        plan.disk_bytes = _gguf_bytes(plan.src, plan.target) or int(n * GGUF_BPW.get(plan.target, 8.5) / 8)
        # llama.cpp streams one tensor at a time through f32 buffers; the source stays mmapped
        plan.ram_bytes = 256 * 1024**2 + min(src_bytes, 512 * 1024**2)
    elif plan.kind == "dequantize":
        plan.disk_bytes = n * 4
        plan.ram_bytes = n * 4 * 2 + GiB // 2  # the fp32 model plus the tensor being dequantized
    else:
        opts = plan.gptq or GPTQOptions()
        plan.disk_bytes = int(n * (opts.bits + 32 / opts.group_size) / 8 * 1.3)  # fp16 embeddings kept
        plan.ram_bytes = n * 4 * 2 + GiB  # the fp32 model, its quantized copy, calibration activations


def _gguf_bytes(src: str, target: str) -> int | None:
    """The estimator's weight bytes for the source's architecture at the target type (it knows which
    tensors llama.cpp keeps at higher precision, e.g. a small model's tied embeddings)."""
    from localllm.machine.estimate import estimate_memory
    from localllm.models.catalog import ModelSpec

    try:
        spec = dataclasses.replace(ModelSpec.from_gguf(src), gguf_path="")  # the target's bytes, not the source's
        return estimate_memory(spec, "gguf", target, 512).weight_bytes
    except Exception:  # an architecture the estimator does not know: fall back to bits per weight
        return None


def _gptq_source(src: str) -> int:
    from localllm.models.checkpoint_check import inspect_checkpoint

    folder = Path(src)
    if not folder.is_dir():
        raise QuantizeError(f"GPTQ starts from a full-precision checkpoint folder, not {src}. Make one from "
                            "a GGUF first: localllm quantize MODEL.gguf --to safetensors")
    info = inspect_checkpoint(folder)  # pickle-only checkpoints are refused here
    if info.quant not in ("", "none", "fp32", "fp16", "bf16", "float32", "float16", "bfloat16"):
        raise QuantizeError(f"{src} is already quantized ({info.quant}); GPTQ needs the full-precision model.")
    return safetensors_params(folder)


def _check_gptq(plan: JobPlan) -> None:
    from localllm.runtime.gptq_env import gptq_python

    opts = plan.gptq or GPTQOptions()
    if opts.bits not in (2, 3, 4, 8):
        raise QuantizeError(f"GPTQ bits must be 2, 3, 4 or 8 (got {opts.bits}).")
    cfg = json.loads((Path(plan.src) / "config.json").read_text())
    hidden = int(cfg.get("hidden_size", 0))
    if opts.group_size != -1 and (opts.group_size <= 0 or (hidden and hidden % opts.group_size)):
        fits = [g for g in (32, 64, 128, 256) if hidden % g == 0]
        raise QuantizeError(f"GPTQ group size {opts.group_size} does not divide the hidden size {hidden}; "
                            f"use one of {', '.join(map(str, fits)) or '-1'} (or -1 for none).")
    gptq_python()  # no GPTQModel environment: refused now, with the command that makes one


# -- the output: one job at a time, nothing half-written left --------------------------------------
def partial_paths(out: Path) -> list[Path]:
    """What a job for `out` writes before its result is renamed into place: the GGUF quantizer's
    `.<name>.<pid>.part`, a folder job's `<out>.partial`, and the `<out>.partial.partial` beside it
    that hf_convert builds before renaming it to the dequantize job's `<out>.partial` (a whole fp32
    checkpoint)."""
    folder = out.with_name(out.name + ".partial")
    part = re.compile(rf"\.{re.escape(out.name)}\.\d+\.part")
    try:
        parts = sorted(p for p in out.parent.iterdir() if part.fullmatch(p.name))
    except OSError:  # no folder: nothing in it
        parts = []
    return [folder, folder.with_name(folder.name + ".partial"), *parts]


def remove_partials(out: Path) -> list[str]:
    """Remove what partial_paths() names; the paths that were there."""
    removed = []
    for path in partial_paths(out):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
        else:
            continue
        removed.append(str(path))
    return removed


@contextmanager
def claim_output(out: Path) -> Iterator[list[str]]:
    """Hold `out` for one job: an flock on `.<name>.localllm-lock` beside it, which the kernel drops
    when this process dies, however it dies. Holding it, any partial output there is a dead run's
    and is removed (yielded: what was removed); a live job holding it refuses this one instead, and
    its partial output is left alone."""
    import fcntl

    lock = out.with_name(f".{out.name}.localllm-lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise QuantizeError(f"Another job is writing {out} now; wait for it or choose another output.") from None
        try:
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # a job that finished unlinked it between our open and our lock: take the new one
    try:
        yield remove_partials(out)
    finally:
        lock.unlink(missing_ok=True)  # still holding it: a job that opened it meanwhile retries
        os.close(fd)


# -- run -----------------------------------------------------------------------------------------
def run_job(plan: JobPlan, progress: Progress | None = None, cancel: threading.Event | None = None,
            threads: int = 0) -> JobResult:
    """Run the plan; the result is recorded and added to the library. Cancel leaves nothing behind, and
    a partial output that a killed earlier run left for the same output is removed first."""
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    with claim_output(plan.out) as stale:
        result = _run(plan, progress, cancel, threads)
    result.stale_removed = stale
    return result


def _run(plan: JobPlan, progress: Progress | None, cancel: threading.Event | None, threads: int) -> JobResult:
    from localllm.models import library

    if plan.out.exists():  # checked in the plan; another job may have written it since
        raise QuantizeError(f"{plan.out} exists already; choose another output or remove it first.")
    started = time.time()
    t0 = time.perf_counter()
    if plan.kind == "gguf":
        requantize_gguf(plan.src, plan.out, plan.target, threads=threads, progress=progress, cancel=cancel)
    elif plan.kind == "dequantize":
        _run_folder_job(plan, [sys.executable, "-m", "localllm.quantize.dequantize_job"], {}, progress, cancel)
    else:
        from localllm.runtime.gptq_env import gptq_python

        opts = {**dataclasses.asdict(plan.gptq or GPTQOptions()), "log_dir": str(config.logs_dir())}
        _run_folder_job(plan, [gptq_python(), str(Path(__file__).with_name("gptq_job.py"))], opts,
                        progress, cancel)
    seconds = time.perf_counter() - t0
    record = {"made_by": "localllm quantize", "source": plan.src, "target": plan.target, "kind": plan.kind,
              "options": dataclasses.asdict(plan.gptq) if plan.gptq else {}, "seconds": round(seconds, 2),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
              "tool": _tool_version(plan.kind), "predicted_bytes": plan.disk_bytes,
              "bytes": _size(plan.out)}
    state.write_json(record_path(plan.out), record, indent=2)  # atomic: never half a record
    entry, _ = library.add_path(plan.out)
    return JobResult(plan.out, seconds, record, entry.id)


def _run_folder_job(plan: JobPlan, command: list[str], options: dict, progress: Progress | None,
                    cancel: threading.Event | None) -> None:
    """A job that writes a folder: into `<out>.partial`, renamed into place only when it succeeded."""
    from localllm.quantize.gguf import run_child

    partial = plan.out.with_name(plan.out.name + ".partial")
    job = {"src": plan.src, "dst": str(partial), **options}
    try:
        run_child(command + [json.dumps(job)], progress, cancel, str(plan.out))
        if not (partial / "config.json").exists():
            raise QuantizeError(f"The job ended without writing a checkpoint; {plan.out} was not written.")
        os.replace(partial, plan.out)
    finally:
        remove_partials(plan.out)  # the child is dead by now (run_child kills it on any error)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _tool_version(kind: str) -> str:
    from importlib import metadata

    dist = {"gguf": "llama-cpp-python", "dequantize": "transformers", "gptq": "gptqmodel"}[kind]
    if kind == "gptq":
        return dist  # installed in its own environment
    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return dist


__all__ = ["GPTQOptions", "JobPlan", "JobResult", "QuantizeCancelled", "QuantizeError", "plan_job", "run_job",
           "read_record", "default_output", "claim_output", "partial_paths"]
