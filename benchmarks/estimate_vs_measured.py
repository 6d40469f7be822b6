"""Predicted vs measured peak memory (and decode speed) of real model loads through localllm's worker.

Loads the embedded SmolLM2-135M Q4_1 and a Q4_K_M made from it with llama.cpp's own quantizer, each
at two context sizes, with a short prompt and with a prompt that fills the context, runs one reply and
prints the estimator's RAM figure beside the worker's measured peak RSS, and their error; then the same
for the transformers backend (fp32, bnb NF4, bnb int8) on the GGUF dequantized by `localllm quantize`.

    python benchmarks/estimate_vs_measured.py            # target: every |error| <= 10% (aim 5%)
    python benchmarks/estimate_vs_measured.py --record   # also keep the runs to calibrate estimates
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quiet import quiet_stderr  # noqa: E402

from localllm.chat.session import ChatSession, ReplyDone
from localllm.config import LoadOptions, SamplingParams
from localllm.machine import bandwidth, calibration, estimate
from localllm.models.catalog import ModelSpec
from localllm.models.embedded import embedded_model_path

MiB = 1024 * 1024
SHORT = "Name three colours of the rainbow."
FILLER = ("The lighthouse keeper wrote down the weather every hour: wind from the west, "
          "rain at times, visibility fair, the sea moderate and the lamp burning steadily. ")


def requantize(src: Path, dst: Path, ftype: int = 15) -> Path:
    """Q4_K_M (ftype 15) from the embedded Q4_1 through llama.cpp's quantizer."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    with quiet_stderr():
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.exists():
        sys.exit(f"llama_model_quantize failed with {rc}")
    return dst


def long_prompt(path: Path, n_tokens: int) -> str:
    """Filler text of about n_tokens tokens of this model's tokenizer."""
    import llama_cpp

    with quiet_stderr():
        vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    per = len(vocab.tokenize(FILLER.encode(), add_bos=False))
    text = FILLER * (n_tokens // per)
    while len(vocab.tokenize(text.encode(), add_bos=False)) > n_tokens:
        text = text[: -len(FILLER)]
    return text


def run_one(path: Path, ctx: int, prompt: str, cpu_gb_s: float, record: bool) -> dict:
    import psutil

    spec = ModelSpec.from_gguf(path)
    session = ChatSession(sampling=SamplingParams(temperature=0.0, max_tokens=32, seed=1))
    try:
        session.load(path, LoadOptions(context=ctx))
        done = None
        for event in session.send(prompt):
            if isinstance(event, ReplyDone):
                done = event
        assert done is not None
        stats = done.stats
        rss_after = psutil.Process(session.worker_pid).memory_info().rss / MiB
    finally:
        session.close()
    measured = max(stats.rss_peak_mib or 0.0, rss_after)
    # the prompt is read in batches (what the compute buffers see); decoding then reads the whole cache
    est = estimate.estimate_memory(spec, "gguf", spec.gguf_quant, ctx, fill=stats.prompt_tokens,
                                   calibrate=False)
    speed = estimate.estimate_speed(spec, est, cpu_gb_s, fill=stats.prompt_tokens + stats.completion_tokens // 2,
                                    calibrate=False)
    row = {"model": path.name, "quant": spec.gguf_quant, "ctx": ctx, "prompt": stats.prompt_tokens,
           "predicted": est.rss_bytes / MiB, "measured": measured,
           "error": 100 * (est.rss_bytes / MiB - measured) / measured, "reclaim": est.reclaimable_cpu / MiB,
           "weights": est.weights_cpu / MiB, "kv": est.kv_cpu / MiB, "compute": est.compute_cpu / MiB,
           "reserved": est.compute_cpu_reserved / MiB, "overhead": est.overhead_cpu / MiB,
           "tok_s": stats.decode_tok_s, "pred_tok_s": speed.tok_s, "roofline": speed.roofline_tok_s}
    if record:
        calibration.record_measurement(model=spec.name, fmt="gguf", quant=spec.gguf_quant, device="cpu",
                                    context=ctx, predicted_tok_s=speed.tok_s, measured_tok_s=stats.decode_tok_s,
                                    predicted_ram_bytes=est.rss_bytes, measured_ram_bytes=int(measured * MiB))
    return row


def speed_run(path: Path, cpu_gb_s: float, reps: int, tokens: int, record: bool) -> dict:
    """Decode speed: `reps` replies of exactly `tokens` tokens; the median against the roofline model."""
    import statistics

    spec = ModelSpec.from_gguf(path)
    session = ChatSession(sampling=SamplingParams(max_tokens=tokens, ignore_eos=True, seed=1))
    rates, prompt = [], 0
    try:
        session.load(path, LoadOptions(context=2048))
        for _ in range(reps):
            session.clear()
            for event in session.send(SHORT):
                if isinstance(event, ReplyDone) and event.stats.decode_tok_s:
                    rates.append(event.stats.decode_tok_s)
                    prompt = event.stats.prompt_tokens
    finally:
        session.close()
    est = estimate.estimate_memory(spec, "gguf", spec.gguf_quant, 2048, calibrate=False)
    speed = estimate.estimate_speed(spec, est, cpu_gb_s, fill=prompt + tokens // 2, calibrate=False)
    # what the recommendation says now: calibrated by the runs kept so far (a `localllm bench` row is one)
    learned = estimate.estimate_speed(spec, est, cpu_gb_s, fill=prompt + tokens // 2)
    measured = statistics.median(rates)
    if record:
        calibration.record_measurement(model=spec.name, fmt="gguf", quant=spec.gguf_quant, device="cpu",
                                    context=2048, predicted_tok_s=speed.tok_s, measured_tok_s=measured)
    return {"model": path.name, "measured": measured, "spread": (min(rates), max(rates)),
            "predicted": speed.tok_s, "roofline": speed.roofline_tok_s, "learned": learned.tok_s,
            "band": learned.band_pct, "runs": learned.runs}


def transformers_run(ckpt: Path, fmt: str, cpu_gb_s: float) -> dict:
    """One short reply through the transformers backend (fp32, or bitsandbytes at load) against the
    estimator's figure for that format."""
    import json

    import psutil

    load_in = {"fp32": "none", "bnb-nf4": "nf4", "bnb-int8": "int8"}[fmt]
    quant = {"fp32": "fp32", "bnb-nf4": "nf4-dq", "bnb-int8": "int8"}[fmt]
    spec = ModelSpec.from_config(json.loads((ckpt / "config.json").read_text()), ckpt.name)
    session = ChatSession(sampling=SamplingParams(max_tokens=32, ignore_eos=True, seed=1))
    try:
        session.load(str(ckpt), LoadOptions(context=2048, quantization=load_in, dtype="float32"))
        stats = next(e for e in session.send(SHORT) if isinstance(e, ReplyDone)).stats
        rss_after = psutil.Process(session.worker_pid).memory_info().rss / MiB
    finally:
        session.close()
    measured = max(stats.rss_peak_mib or 0.0, rss_after)
    est = estimate.estimate_memory(spec, fmt, quant, 2048, fill=stats.prompt_tokens, calibrate=False)
    return {"model": f"{ckpt.name} ({fmt})", "predicted": est.rss_bytes / MiB, "measured": measured,
            "error": 100 * (est.rss_bytes / MiB - measured) / measured, "tok_s": stats.decode_tok_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ctx", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--record", action="store_true", help="keep the runs for calibration")
    parser.add_argument("--speed-reps", type=int, default=3, help="decode-speed replies per model (0: none)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                        help="run the memory table (--no-memory: speed only)")
    parser.add_argument("--transformers", action=argparse.BooleanOptionalAction, default=True,
                        help="also fp32, bnb NF4 and bnb int8 loads of the dequantized checkpoint")
    args = parser.parse_args()
    embedded = embedded_model_path()
    cpu_gb_s = bandwidth.measured_bandwidth(refresh=True)  # now, not a figure from a busier moment
    rows = []
    with tempfile.TemporaryDirectory(prefix="localllm-quant-") as tmp:
        q4km = requantize(embedded, Path(tmp) / "SmolLM2-135M-Instruct.Q4_K_M.gguf")
        for path in (embedded, q4km) if args.memory else ():
            for ctx in args.ctx:
                filled = long_prompt(path, ctx - 120)  # room for the template and the reply
                for prompt in (SHORT, filled):
                    rows.append(run_one(path, ctx, prompt, cpu_gb_s, args.record))
                    print_row(rows[-1], header=len(rows) == 1)
        if args.speed_reps:
            print(f"\ndecode speed, {args.speed_reps} x 128 tokens at ctx 2048 (CPU bandwidth {cpu_gb_s:.1f} GB/s):")
            for path in (embedded, q4km):
                r = speed_run(path, cpu_gb_s, args.speed_reps, 128, args.record)
                print(f"{r['model']:36} measured {r['measured']:6.1f} tok/s ({r['spread'][0]:.1f}-"
                      f"{r['spread'][1]:.1f})  predicted {r['predicted']:6.1f}  "
                      f"error {100 * (r['predicted'] - r['measured']) / r['measured']:+5.1f}%  "
                      f"{100 * r['measured'] / r['roofline']:3.0f}% of the {r['roofline']:.0f} tok/s limit")
                print(f"{'':36} calibrated by {r['runs']} run(s) here: {r['learned']:6.1f} ±{r['band']:.0f}%  "
                      f"error {100 * (r['learned'] - r['measured']) / r['measured']:+5.1f}%")
        if args.transformers:
            from localllm.quantize.jobs import plan_job, run_job

            ckpt = run_job(plan_job(str(embedded), "safetensors", Path(tmp) / "SmolLM2-135M-Instruct-fp32")).path
            print(f"\ntransformers loads of {ckpt.name}, ctx 2048, a short prompt and 32 new tokens:")
            for fmt in ("fp32", "bnb-nf4", "bnb-int8"):
                r = transformers_run(ckpt, fmt, cpu_gb_s)
                rows.append({**r, "error": r["error"]})
                print(f"{r['model']:44} predicted {r['predicted']:7.1f} MiB  measured {r['measured']:7.1f} MiB  "
                      f"error {r['error']:+5.1f}%  ({r['tok_s'] or 0:.1f} tok/s)", flush=True)
    if not rows:
        return 0
    worst = max(abs(r["error"]) for r in rows)
    print(f"\nworst memory |error| {worst:.1f}% (target 10%, aim 5%); CPU bandwidth {cpu_gb_s:.1f} GB/s")
    return 0 if worst <= 10 else 1


def print_row(r: dict, header: bool) -> None:
    if header:
        print(f"{'model':36} {'ctx':>5} {'prompt':>6} | {'pred MiB':>8} {'meas MiB':>8} {'err%':>6} | "
              f"{'weights':>7} {'reclm':>5} {'kv':>6} {'compute':>7} {'(resv)':>7} {'ovh':>5} | "
              f"{'tok/s':>6} {'pred':>6} {'%roof':>5}")
    tok = r["tok_s"] or 0.0
    print(f"{r['model']:36} {r['ctx']:5d} {r['prompt']:6d} | {r['predicted']:8.1f} {r['measured']:8.1f} "
          f"{r['error']:+6.1f} | {r['weights']:7.1f} {r['reclaim']:5.1f} {r['kv']:6.1f} {r['compute']:7.1f} {r['reserved']:7.1f} "
          f"{r['overhead']:5.1f} | {tok:6.1f} {r['pred_tok_s']:6.1f} {100 * tok / r['roofline']:5.0f}",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
