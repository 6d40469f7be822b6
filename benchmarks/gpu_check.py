"""Everything an NVIDIA GPU machine offers localllm, checked in one run of about 10 minutes.

Five sections, each on its own: one that fails prints its error and the others still run; one that
cannot run here (no GPU, a CPU-only build) prints one line saying why and is skipped.

  1. nvml          the GPUs as localllm.machine.hardware sees them, and one child process's VRAM through NVML
  2. binding       whether llama-cpp-python was built with GPU offload (and the fix when it was not)
  3. gguf          the embedded GGUF and a ~1B random-weight Llama GGUF made here, with all, half and
                   none of the layers on the GPU (and the load plan's own choice): decode tok/s
                   against the memory-bandwidth roofline, the estimated VRAM against the measured peak
  4. transformers  a ~1B random-weight Llama in fp16, bitsandbytes int8 and NF4, batch 1 and 16
  5. gptq          the same model quantized with GPTQModel (4 bits, group 128), batch 1 and 16

Results come in seed 002's shape (config, batch, load s, per-token latency ms, tok/s, peak VRAM MiB).
On a machine without a GPU every section says it was skipped and the script exits 0.

    python benchmarks/gpu_check.py [--minutes 10] [--json results.json] [--skip gptq ...]

Exit status: 0 when every section ran or was skipped, 1 when one failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

# localllm from this checkout, also where the venv's editable install points at another folder (a copy
# of the tree on a GPU machine).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quiet import quiet_stderr  # noqa: E402

# Only the standard library up here: torch, transformers, llama_cpp and localllm's heavier modules are
# imported inside the sections, so a missing or CPU-only one costs that section only.

SECTIONS = {"nvml": "NVML inventory", "binding": "llama-cpp-python binding",
            "gguf": "GGUF offload through localllm's worker", "transformers": "transformers on CUDA",
            "gptq": "GPTQ through GPTQModel"}
MiB = 1024 * 1024
CTX = 2048
GGUF_TOKENS = 128  # new tokens per timed GGUF reply
HF_PROMPT_TOKENS, HF_NEW_TOKENS = 32, 64  # transformers and GPTQ: prompt and new tokens per generate()
BATCHES = (1, 16)  # seed 002 reports batch 1 and batch 16
PROMPT = "Write a short story about a lighthouse keeper and a storm."
CUDA_FIX = 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python'
# The random model of sections 3-5: TinyLlama's shape (hidden 2048, 16 heads, FFN 5632), 16 layers and
# SmolLM2's 49152-token vocabulary (its tokenizer comes from the embedded GGUF, so the checkpoint has a
# real one, which GPTQModel and llama.cpp want): ~1.0B parameters.
HIDDEN, HEADS, FFN = 2048, 16, 5632
PLAIN_VOCAB = 32000  # when no tokenizer can be made
DEVICE = "cuda"  # torch's device for sections 4 and 5 (a dry run of the code on a CPU sets "cpu")


class Skip(Exception):
    """A section (or one step of it) that cannot run here; the message says why."""


@dataclass
class Budget:
    """The time the whole run may take; heavy steps ask first and are skipped with a note when late."""

    minutes: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.minutes * 60 - (time.monotonic() - self.start)

    def allows(self, seconds: float, what: str, notes: list[str]) -> bool:
        if self.left() >= seconds:
            return True
        note = f"skipped {what}: {max(0.0, self.left()):.0f} s of the budget left, it needs about {seconds:.0f} s"
        print(f"  {note}", flush=True)
        notes.append(note)
        return False


@dataclass
class Context:
    """What the sections share: the machine, the budget, the table rows, a scratch folder."""

    budget: Budget
    work: Path
    hw: object = None  # localllm.machine.hardware.HardwareInfo, None when the probe failed
    no_gpu: str | None = None  # why there is no NVIDIA GPU; None when there is one
    offload: bool | None = None  # llama-cpp-python built with GPU offload (None: not asked yet)
    checkpoint: Path | None = None  # the random transformers checkpoint, made once for sections 4 and 5
    rows: list[dict] = field(default_factory=list)


# -- output -------------------------------------------------------------------------------------------
TABLE_HEAD = ("config", "batch", "load s", "latency ms", "tok/s", "peak VRAM MiB")


def fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    """Seed 002's columns as a Markdown table (latency: mean ms per new token)."""
    lines = ["| " + " | ".join(TABLE_HEAD) + " |", "|" + "---|" * len(TABLE_HEAD)]
    for r in rows:
        cells = [r["config"], str(r["batch"]), fmt(r.get("load_s")), fmt(r.get("latency_ms"), 3),
                 fmt(r.get("tok_s"), 1), fmt(r.get("vram_peak_mib"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_row(ctx: Context, section: str, config: str, batch: int, load_s, latency_ms, tok_s, vram_mib,
            **extra) -> dict:
    row = {"section": section, "config": config, "batch": batch, "load_s": load_s,
           "latency_ms": latency_ms, "tok_s": tok_s, "vram_peak_mib": vram_mib, **extra}
    ctx.rows.append(row)
    print(f"  {config} · batch {batch} · load {fmt(load_s)} s · {fmt(latency_ms, 3)} ms/token · "
          f"{fmt(tok_s, 1)} tok/s · peak VRAM {fmt(vram_mib, 1)} MiB", flush=True)
    return row


# -- 1. NVML inventory --------------------------------------------------------------------------------
# A child that holds a CUDA context and 256 MiB through the driver API (libcuda, present wherever the
# NVIDIA driver is): no torch or CUDA toolkit needed to see a process in NVML's list.
VRAM_CHILD = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
steps = (("cuInit", lambda: cuda.cuInit(0)),
         ("cuDeviceGet", lambda: cuda.cuDeviceGet(ctypes.byref(dev), 0)),
         ("cuDevicePrimaryCtxRetain", lambda: cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev)),
         ("cuCtxSetCurrent", lambda: cuda.cuCtxSetCurrent(ctx)),
         ("cuMemAlloc_v2", lambda: cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(256 << 20))))
for name, call in steps:
    rc = call()
    if rc:
        sys.exit(f"{name} failed with CUDA error {rc}")
print("ready", flush=True)
sys.stdin.read()  # hold the memory until the parent closes our stdin
"""


def child_vram(pid_timeout: float = 30.0) -> dict:
    from localllm.machine import gpu

    child = subprocess.Popen([sys.executable, "-c", VRAM_CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # a driver that hangs in cuInit must not hang the whole check: wait for "ready" a minute at most
        ready = select.select([child.stdout], [], [], 60)[0]
        line = child.stdout.readline().strip() if ready else ""
        if line != "ready":
            child.kill()
            child.wait(timeout=pid_timeout)
            said = child.stderr.read().strip().splitlines() or [line or "no output"]
            raise RuntimeError(f"the CUDA child failed: {said[-1]}")
        used = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # NVML lists a new context within a moment
            used = gpu.process_vram_bytes(child.pid)
            if used:
                break
            time.sleep(0.2)
    finally:
        with contextlib.suppress(OSError):
            child.stdin.close()
        try:
            child.wait(timeout=pid_timeout)
        except subprocess.TimeoutExpired:
            child.kill()
    return {"pid": child.pid, "allocated_mib": 256, "nvml_vram_mib": used / MiB if used else used}


def ready_nvml(ctx: Context) -> None:
    if ctx.hw is not None and ctx.no_gpu:
        raise Skip(ctx.no_gpu)


def section_nvml(ctx: Context) -> dict:
    if ctx.hw is None:
        raise RuntimeError(ctx.no_gpu)
    hw = ctx.hw
    print(f"  driver {hw.driver_version} · CUDA (driver) {hw.cuda_version}")
    for g in hw.gpus:
        print(f"  GPU {g.index}: {g.name} · {g.total_bytes / MiB:.0f} MiB total, {g.free_bytes / MiB:.0f} MiB "
              f"free · {fmt(g.bandwidth_gb_s, 1)} GB/s · compute capability {g.compute_capability}"
              + (f" · notes: {'; '.join(g.notes)}" if g.notes else ""))
    out = {"driver_version": hw.driver_version, "cuda_version": hw.cuda_version,
           "gpus": [asdict(g) for g in hw.gpus]}
    try:
        child = child_vram()
    except Exception as exc:  # the inventory above still stands
        child = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  per-process VRAM: could not start a CUDA child: {child['error']}")
    else:
        used = child["nvml_vram_mib"]
        if used:
            print(f"  per-process VRAM of a child holding 256 MiB (pid {child['pid']}): {used:.0f} MiB "
                  f"through localllm.machine.gpu.process_vram_bytes (the allocation plus its CUDA context)")
        else:
            print(f"  per-process VRAM of a child holding 256 MiB: NVML gave {used!r}: it does not list this "
                  "PID (a container's PID namespace hides it), so localllm shows no VRAM per model")
    out["child"] = child
    return out


# -- 2. binding ---------------------------------------------------------------------------------------
def binding_info() -> dict:
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return {"version": getattr(llama_cpp, "__version__", "?"),
            "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "system_info": info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)}


def ready_binding(ctx: Context) -> None:
    if not ctx.no_gpu:
        return
    try:  # still worth one clause: what this build would do on a GPU machine
        info = binding_info()
        ctx.offload = info["gpu_offload"]
        built = f"; llama-cpp-python {info['version']} here is built with GPU offload: " + (
            "yes" if info["gpu_offload"] else "no")
    except Exception as exc:
        built = f"; llama_cpp does not import: {exc}"
    raise Skip(ctx.no_gpu + built)


def section_binding(ctx: Context) -> dict:
    info = binding_info()
    ctx.offload = info["gpu_offload"]
    print(f"  llama-cpp-python {info['version']} · GPU offload: {'yes' if ctx.offload else 'NO'}")
    print(f"  system info: {info['system_info'].strip()}")
    if not ctx.offload:
        info["fix"] = CUDA_FIX
        print(f"  this build runs on the CPU only; section 3 is skipped. Fix: {CUDA_FIX}")
    return info


# -- 3. GGUF offload ----------------------------------------------------------------------------------
def nvml_used_mib() -> float | None:
    """Memory used on all GPUs together: the fallback when NVML hides per-process figures."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return sum(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).used
                   for i in range(pynvml.nvmlDeviceGetCount())) / MiB
    except Exception:
        return None


def write_random_gguf(path: Path, layers: int) -> Path:
    """An F16 Llama GGUF with random weights and the embedded model's tokenizer (so llama.cpp has a real
    vocabulary and chat template). One random pool is sliced for every tensor: the values do not matter
    for speed, and drawing 1B fresh numbers would take longer than the rest."""
    import gguf
    import numpy as np

    from localllm.models.embedded import embedded_model_path

    reader = gguf.GGUFReader(str(embedded_model_path()))
    tokenizer = {name: f for name, f in reader.fields.items() if name.startswith("tokenizer.")}
    vocab = len(tokenizer["tokenizer.ggml.tokens"].data)
    head_dim = HIDDEN // HEADS

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"random-llama-{layers}L")
    writer.add_context_length(CTX)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for name, f in tokenizer.items():
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, f.contents(), vtype, sub_type=sub)

    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(vocab * HIDDEN + 4096, dtype=np.float32) * 0.02).astype(np.float16)

    def rand(*shape: int):
        n = int(np.prod(shape))
        start = int(rng.integers(0, len(pool) - n + 1))
        return pool[start:start + n].reshape(shape)  # a view: no copy held per tensor

    ones = np.ones(HIDDEN, dtype=np.float32)
    writer.add_tensor("token_embd.weight", rand(vocab, HIDDEN))
    for i in range(layers):
        for name, shape in (("attn_q", (HIDDEN, HIDDEN)), ("attn_k", (HIDDEN, HIDDEN)),
                            ("attn_v", (HIDDEN, HIDDEN)), ("attn_output", (HIDDEN, HIDDEN)),
                            ("ffn_gate", (FFN, HIDDEN)), ("ffn_up", (FFN, HIDDEN)), ("ffn_down", (HIDDEN, FFN))):
            writer.add_tensor(f"blk.{i}.{name}.weight", rand(*shape))
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", rand(vocab, HIDDEN))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def random_gguf(ctx: Context, layers: int) -> Path:
    """Q4_K_M (what most people download) from the random F16, through llama.cpp's own quantizer."""
    import ctypes

    import llama_cpp

    f16 = write_random_gguf(ctx.work / "random-llama.F16.gguf", layers)
    out = ctx.work / "random-llama.Q4_K_M.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = os.cpu_count() or 1
    with quiet_stderr():
        rc = llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), ctypes.byref(params))
    f16.unlink(missing_ok=True)
    if rc != 0 or not out.exists():
        raise RuntimeError(f"llama_model_quantize failed with {rc}")
    return out


def reply_stats(session):
    from localllm.chat.session import ReplyDone

    stats = None
    for event in session.send(PROMPT):
        if isinstance(event, ReplyDone):
            stats = event.stats
    return stats


def roofline_tok_s(est, gpu_gb_s: float | None, cpu_gb_s: float | None) -> float | None:
    """Tokens per second if every weight byte a token reads moved at full memory bandwidth: the GPU's
    share at the GPU's bandwidth, the CPU's share at the CPU's. All layers on the GPU: bandwidth / bytes."""
    seconds = 0.0
    if est.read_gpu:
        if not gpu_gb_s:
            return None
        seconds += est.read_gpu / (gpu_gb_s * 1e9)
    if est.read_cpu:
        if not cpu_gb_s:
            return None
        seconds += est.read_cpu / (cpu_gb_s * 1e9)
    return 1 / seconds if seconds else None


def gguf_run(ctx: Context, label: str, path: str, n_gpu_layers: int, est, what: str,
             bandwidths: tuple[float | None, float | None]) -> dict:
    """Load through localllm's worker, one warm-up reply (CUDA kernels and graphs are made on first use),
    then one timed reply of exactly GGUF_TOKENS tokens."""
    from localllm.chat.session import ChatSession
    from localllm.config import LoadOptions, SamplingParams

    before = nvml_used_mib()
    session = ChatSession(system_prompt="You are a helpful assistant.",
                          sampling=SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, seed=0))
    try:
        t0 = time.perf_counter()
        session.load(path, LoadOptions(gpu_layers=n_gpu_layers, context=CTX))
        load_s = time.perf_counter() - t0
        reply_stats(session)
        session.clear()
        session.sampling = SamplingParams(temperature=0, max_tokens=GGUF_TOKENS, ignore_eos=True, seed=0)
        stats = reply_stats(session)
        after = nvml_used_mib()
        placed = session.model.n_gpu_layers if session.model is not None else None
    finally:
        session.close()
    if stats is None:
        raise RuntimeError("the reply ended without its stats")
    vram, vram_source = stats.vram_peak_mib, "worker (NVML per process)"
    if not vram and before is not None and after is not None:
        vram, vram_source = after - before, "whole GPU, used after the reply minus before the load"
    tok_s = stats.decode_tok_s
    roof = roofline_tok_s(est, *bandwidths)
    est_mib = est.vram_bytes / MiB
    err = 100 * (est_mib - vram) / vram if vram else None
    config = f"{label} · {what}"
    row = add_row(ctx, "gguf", config, 1, load_s, 1000 / tok_s if tok_s else None, tok_s, vram,
                  n_gpu_layers_asked=n_gpu_layers, n_gpu_layers_model=placed,
                  tokens=stats.completion_tokens, bytes_per_token=est.read_gpu + est.read_cpu,
                  read_gpu=est.read_gpu, read_cpu=est.read_cpu, roofline_tok_s=roof,
                  roofline_pct=100 * tok_s / roof if roof and tok_s else None,
                  est_vram_mib=est_mib, vram_error_pct=err, vram_source=vram_source,
                  rss_peak_mib=stats.rss_peak_mib, ttft_s=stats.ttft_s, prefill_tok_s=stats.prefill_tok_s)
    print(f"    n_gpu_layers asked {n_gpu_layers}, model reports {placed} · {stats.completion_tokens} tokens · "
          f"reads {(est.read_gpu + est.read_cpu) / MiB:.0f} MiB/token ({est.read_gpu / MiB:.0f} GPU + "
          f"{est.read_cpu / MiB:.0f} CPU) · roofline {fmt(roof, 0)} tok/s · "
          f"{fmt(row['roofline_pct'], 1)}% of it", flush=True)
    print(f"    VRAM estimated {est_mib:.0f} MiB · measured {fmt(vram, 0)} MiB ({vram_source}) · "
          f"error {fmt(err, 1)}%", flush=True)
    return row


def plan_run(ctx: Context, label: str, path: str, bandwidths, notes: list[str]) -> None:
    """What localllm.runtime.plan chooses for the default (auto) placement, then one load with it. The module
    is being written alongside this script: its absence is a note, not a failure."""
    from localllm.config import LoadOptions

    try:
        from localllm.runtime.plan import plan_for

        plan = plan_for(path, LoadOptions(context=CTX))
        layers, est = plan.gpu_layers, plan.estimate
    except (ImportError, AttributeError) as exc:
        note = f"{label}: no load plan to check (localllm.runtime.plan.plan_for: {exc})"
        print(f"  {note}")
        notes.append(note)
        return
    print(f"  {label}: the plan puts {layers} layers on the GPU, estimating {est.vram_bytes / MiB:.0f} MiB "
          "of VRAM", flush=True)
    gguf_run(ctx, label, path, LoadOptions().gpu_layers, est, f"auto (plan: {layers} layers)", bandwidths)


def ready_gguf(ctx: Context) -> None:
    if ctx.no_gpu:
        raise Skip(ctx.no_gpu)
    if ctx.offload is None:  # section 2 was skipped: ask the binding here
        ctx.offload = binding_info()["gpu_offload"]
    if not ctx.offload:
        raise Skip(f"llama-cpp-python was built without GPU offload. Fix: {CUDA_FIX}")


def section_gguf(ctx: Context) -> dict:
    from localllm.machine import bandwidth
    from localllm.machine.estimate import estimate_file
    from localllm.models.catalog import ModelSpec
    from localllm.models.embedded import embedded_model_path

    gpu_gb_s = next((g.bandwidth_gb_s for g in ctx.hw.gpus if g.vendor == "nvidia"), None)
    cpu_gb_s = ctx.hw.cpu_bandwidth_gb_s or bandwidth.measured_bandwidth(cpu=ctx.hw.cpu)
    print(f"  bandwidth: GPU {fmt(gpu_gb_s, 0)} GB/s (NVML: memory clock x bus width), "
          f"CPU {fmt(cpu_gb_s, 1)} GB/s (measured)")
    notes: list[str] = []
    models = [("SmolLM2-135M Q4_1 (embedded)", str(embedded_model_path()))]
    layers = 16 if ctx.budget.left() > 7 * 60 else 8
    if ctx.budget.allows(240, "the random-weight GGUF", notes):
        try:
            t0 = time.perf_counter()
            path = random_gguf(ctx, layers)
            models.append((f"random Llama {layers}L Q4_K_M", str(path)))
            print(f"  made {path.name} ({path.stat().st_size / MiB:.0f} MiB, {layers} layers) in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        except Exception as exc:
            note = f"random-weight GGUF not made: {type(exc).__name__}: {exc}"
            print(f"  {note}")
            notes.append(note)
    for label, path in models:
        n = ModelSpec.from_gguf(path).layers
        for n_gpu, what in ((-1, "all layers"), (n // 2, f"{n // 2} of {n} layers"), (0, "0 layers")):
            if not ctx.budget.allows(45, f"{label} with {what}", notes):
                break
            try:
                est = estimate_file(path, context=CTX, gpu_layers=n_gpu)
                gguf_run(ctx, label, path, n_gpu, est, what, (gpu_gb_s, cpu_gb_s))
            except Exception as exc:  # one load failing (e.g. out of memory) leaves the others
                notes.append(f"{label} with {what}: {type(exc).__name__}: {exc}")
                print(f"  {label} with {what} FAILED: {type(exc).__name__}: {exc}")
        if ctx.budget.allows(45, f"{label} with the load plan", notes):
            try:
                plan_run(ctx, label, path, (gpu_gb_s, cpu_gb_s), notes)
            except Exception as exc:
                notes.append(f"{label} with the load plan: {type(exc).__name__}: {exc}")
                print(f"  {label} with the load plan FAILED: {type(exc).__name__}: {exc}")
    return {"gpu_gb_s": gpu_gb_s, "cpu_gb_s": cpu_gb_s, "models": [m[0] for m in models], "notes": notes}


# -- 4. transformers on CUDA --------------------------------------------------------------------------
def cuda_torch():
    """torch with a usable CUDA device, or Skip saying what is missing."""
    try:
        import torch
    except ImportError as exc:
        raise Skip(f"torch is not installed ({exc})") from None
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise Skip(f"torch {torch.__version__} ({build}) sees no CUDA device")
    return torch


def free_cuda(torch) -> None:
    import gc

    gc.collect()
    torch.cuda.empty_cache()


def random_checkpoint(ctx: Context, torch) -> Path:
    """A random-weight Llama saved as fp16 safetensors, made once and shared by sections 4 and 5 (loading
    it from disk is what the load-time column measures). Weights are drawn on the GPU: seconds, not
    the minute a CPU init of 1B parameters takes."""
    if ctx.checkpoint is not None:
        return ctx.checkpoint
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    layers = 16 if ctx.budget.left() > 6 * 60 else 8 if ctx.budget.left() > 3 * 60 else 4
    out = ctx.work / f"random-llama-{layers}L"
    tokenizer = None
    try:
        from localllm.models.embedded import embedded_model_path

        gguf_path = embedded_model_path()
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    except Exception as exc:  # a plain vocabulary still times the same; GPTQModel may want a tokenizer
        print(f"  no tokenizer from the embedded GGUF ({type(exc).__name__}: {exc}); vocab {PLAIN_VOCAB}")
    vocab = len(tokenizer) if tokenizer is not None else PLAIN_VOCAB
    config = LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=layers,
                         num_attention_heads=HEADS, num_key_value_heads=HEADS, max_position_embeddings=CTX,
                         tie_word_embeddings=False,
                         bos_token_id=getattr(tokenizer, "bos_token_id", None) or 1,
                         eos_token_id=getattr(tokenizer, "eos_token_id", None) or 2)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(config).to(torch.float16)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    del model
    free_cuda(torch)
    print(f"  made a random Llama checkpoint: {params / 1e9:.2f}B parameters, {layers} layers, vocab {vocab}, "
          f"fp16, in {time.perf_counter() - t0:.0f} s", flush=True)
    ctx.checkpoint = out
    return out


def time_generate(torch, model, batch: int, vocab: int) -> tuple[float, float, float]:
    """(ms per new token, tok/s over the batch, peak MiB allocated) of one generate() after a short
    warm-up at the same batch size (kernels, cuBLAS handles and bnb's buffers are made on first use)."""
    gen = torch.Generator(device="cpu").manual_seed(batch)
    ids = torch.randint(100, vocab, (batch, HF_PROMPT_TOKENS), generator=gen).to(DEVICE)
    mask = torch.ones_like(ids)
    args = {"input_ids": ids, "attention_mask": mask, "do_sample": False, "pad_token_id": 0}
    model.generate(**args, max_new_tokens=8, min_new_tokens=8)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = model.generate(**args, max_new_tokens=HF_NEW_TOKENS, min_new_tokens=HF_NEW_TOKENS)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    new = out.shape[1] - ids.shape[1]
    return 1000 * seconds / new, batch * new / seconds, torch.cuda.max_memory_allocated() / MiB


def timed_rows(ctx: Context, torch, section: str, label: str, model, load_s: float, notes: list[str]) -> None:
    vocab = model.config.vocab_size
    for batch in BATCHES:
        if not ctx.budget.allows(20, f"{label} at batch {batch}", notes):
            return
        latency, tok_s, peak = time_generate(torch, model, batch, vocab)
        add_row(ctx, section, label, batch, load_s, latency, tok_s, peak)


def ready_transformers(ctx: Context) -> None:
    cuda_torch()
    try:
        import transformers  # noqa: F401
    except ImportError as exc:
        raise Skip(f"transformers is not installed ({exc})") from None


def section_transformers(ctx: Context) -> dict:
    torch = cuda_torch()
    import transformers
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    transformers.utils.logging.disable_progress_bar()  # one bar per load and save: noise in a report
    notes: list[str] = []
    print(f"  torch {torch.__version__} (CUDA {torch.version.cuda}) · transformers {transformers.__version__} · "
          f"{torch.cuda.get_device_name(0)}")
    if not ctx.budget.allows(90, "the random checkpoint (and so this section)", notes):
        return {"notes": notes}
    ckpt = random_checkpoint(ctx, torch)
    configs = [("transformers fp16", None),
               ("bnb int8", lambda: BitsAndBytesConfig(load_in_8bit=True)),
               ("bnb nf4", lambda: BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_compute_dtype=torch.float16,
                                                      bnb_4bit_use_double_quant=True))]
    for label, quant in configs:
        if not ctx.budget.allows(45, label, notes):
            break
        model = None
        try:
            if quant is not None:
                import bitsandbytes  # noqa: F401  (a clear error here rather than deep in from_pretrained)
            free_cuda(torch)
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float16, device_map=DEVICE,
                                                         quantization_config=quant() if quant else None)
            torch.cuda.synchronize()
            load_s = time.perf_counter() - t0
            model.eval()
            timed_rows(ctx, torch, "transformers", f"{label} ({ckpt.name})", model, load_s, notes)
        except Exception as exc:  # e.g. bitsandbytes without CUDA kernels: the other configs still run
            notes.append(f"{label}: {type(exc).__name__}: {exc}")
            print(f"  {label} FAILED: {type(exc).__name__}: {exc}")
        finally:
            del model
            free_cuda(torch)
    return {"checkpoint": str(ckpt), "notes": notes}


# -- 5. GPTQ ------------------------------------------------------------------------------------------
def ready_gptq(ctx: Context) -> None:
    import importlib.util

    missing = "gptqmodel not installed (pip install gptqmodel)"
    try:
        cuda_torch()
    except Skip as why:
        raise Skip(f"{why}" + ("" if importlib.util.find_spec("gptqmodel") else f"; {missing}")) from None
    try:
        import gptqmodel  # noqa: F401
    except ImportError as exc:
        raise Skip(f"{missing}: {exc}") from None


def section_gptq(ctx: Context) -> dict:
    from gptqmodel import GPTQModel, QuantizeConfig

    torch = cuda_torch()
    notes: list[str] = []
    if not ctx.budget.allows(150, "GPTQ quantization (and so this section)", notes):
        return {"notes": notes}
    ckpt = random_checkpoint(ctx, torch)
    out = ctx.work / f"{ckpt.name}-gptq-4bit-g128"
    # A few rows of random token ids: enough for GPTQ to run; the quality of a random model is moot.
    gen = torch.Generator().manual_seed(0)
    vocab = json.loads((ckpt / "config.json").read_text())["vocab_size"]
    rows = [{"input_ids": ids, "attention_mask": [1] * len(ids)}
            for ids in torch.randint(100, vocab, (16, 128), generator=gen).tolist()]
    t0 = time.perf_counter()
    model = GPTQModel.load(str(ckpt), QuantizeConfig(bits=4, group_size=128))
    model.quantize(rows, batch_size=1)
    model.save(str(out))
    quantize_s = time.perf_counter() - t0
    del model
    free_cuda(torch)
    print(f"  quantized {ckpt.name} to 4 bits, group 128, with {len(rows)} random rows in {quantize_s:.0f} s",
          flush=True)
    if not ctx.budget.allows(45, "timing the GPTQ model", notes):
        return {"quantize_s": quantize_s, "notes": notes}
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    qmodel = GPTQModel.load(str(out), device=DEVICE)
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    try:
        hf = getattr(qmodel, "model", qmodel)  # the transformers model inside GPTQModel's wrapper
        kernels = sorted({type(m).__name__ for m in hf.modules() if hasattr(m, "qweight")})
        print(f"  GPTQ kernels: {', '.join(kernels) or 'unknown'}", flush=True)
        timed_rows(ctx, torch, "gptq", f"GPTQ 4-bit g128 ({ckpt.name})", hf, load_s, notes)
    finally:
        del qmodel
        free_cuda(torch)
    return {"quantize_s": quantize_s, "kernels": kernels, "notes": notes}


# -- the run ------------------------------------------------------------------------------------------
def probe_machine(ctx: Context) -> None:
    """localllm's own view of the machine decides which sections can run."""
    try:
        from localllm.machine.hardware import probe

        ctx.hw = probe()
    except Exception as exc:
        ctx.no_gpu = f"localllm.machine.hardware.probe() failed: {type(exc).__name__}: {exc}"
        return
    if not any(g.vendor == "nvidia" for g in ctx.hw.gpus):
        ctx.no_gpu = ctx.hw.gpu_reason or "No NVIDIA GPU found by NVML"


def write_json(path: str | None, results: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget for the whole run (default 10)")
    parser.add_argument("--json", metavar="PATH", help="also write every result to this JSON file")
    parser.add_argument("--skip", action="append", default=[], choices=list(SECTIONS), metavar="SECTION",
                        help=f"skip a section (repeatable): {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)

    # (whether it can run here: raises Skip with the reason, the section itself)
    runners = {"nvml": (ready_nvml, section_nvml), "binding": (ready_binding, section_binding),
               "gguf": (ready_gguf, section_gguf),
               "transformers": (ready_transformers, section_transformers), "gptq": (ready_gptq, section_gptq)}
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "minutes": args.minutes,
                     "python": sys.version.split()[0], "sections": {}, "rows": []}
    failed = False
    with tempfile.TemporaryDirectory(prefix="localllm-gpu-check-") as tmp:
        ctx = Context(budget=Budget(args.minutes), work=Path(tmp))
        probe_machine(ctx)
        for number, (name, title) in enumerate(SECTIONS.items(), 1):
            head = f"[{number}/{len(SECTIONS)}] {name} ({title})"
            t0 = time.perf_counter()
            ready, run = runners[name]
            try:
                if name in args.skip:
                    raise Skip(f"--skip {name}")
                ready(ctx)
                print(head, flush=True)
                entry = {"status": "ok", **(run(ctx) or {})}
            except Skip as why:
                entry = {"status": "skipped", "reason": str(why)}
                print(f"{head}: skipped: {why}", flush=True)
            except Exception as exc:
                failed = True
                entry = {"status": "error", "reason": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()}
                print(f"  {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
                print("    " + traceback.format_exc().strip().replace("\n", "\n    "), flush=True)
            entry["elapsed_s"] = round(time.perf_counter() - t0, 2)
            results["sections"][name] = entry
            results["rows"] = ctx.rows
            write_json(args.json, results)  # after every section: a run cut short keeps what it had
    if ctx.rows:
        print(f"\nseed 002 table ({HF_NEW_TOKENS} new tokens per generate() for transformers/GPTQ, "
              f"{GGUF_TOKENS} decode tokens for GGUF):")
        print(table(ctx.rows))
    summary = " · ".join(f"{name} {entry['status']}" for name, entry in results["sections"].items())
    print(f"\ndone in {time.monotonic() - ctx.budget.start:.0f} s: {summary}")
    results["elapsed_s"] = round(time.monotonic() - ctx.budget.start, 1)
    write_json(args.json, results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
