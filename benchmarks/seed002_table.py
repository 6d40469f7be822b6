"""Seed 002's table on this machine: the embedded SmolLM2 in every format localllm runs, one timing run.

Makes what is missing with the app's own quantize jobs (into a folder kept between runs): a Q8_0 and a
Q4_K_M GGUF with llama.cpp's quantizer, a fp32 safetensors checkpoint dequantized from the GGUF, and a
GPTQ 4-bit (group 64) checkpoint with GPTQModel when its environment exists (`localllm quantize
--setup-gptq` or LOCALLLM_GPTQ_PYTHON). Then one `localllm bench` plan over GGUF Q4_1 / Q8_0 / Q4_K_M,
transformers fp32, bnb int8, bnb NF4 and GPTQ, and prints seed 002's columns (load s, per-token
latency, tok/s, peak MB) and the full table. Each configuration runs at every --batch size: seed 002
measured batch 1 and 16, where per-token latency is the time of one decode step and tok/s is
B x tokens / decode time.

    python benchmarks/seed002_table.py [--reps 3] [--tokens 30] [--batch 1,16] [--work DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from localllm.bench import export as bench_export
from localllm.bench.plan import BenchConfig, BenchPlan
from localllm.bench.runs import run_plan
from localllm.errors import LocalLLMError
from localllm.quantize.jobs import GPTQOptions, plan_job, run_job


def make(src: str, target: str, out: Path, **kw) -> str | None:
    if out.exists():
        return str(out)
    try:
        print(f"making {out.name} ...", file=sys.stderr, flush=True)
        return str(run_job(plan_job(src, target, out, **kw)).path)
    except LocalLLMError as exc:
        print(f"skipping {target}: {exc}", file=sys.stderr)
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=30, help="new tokens per reply (seed 002: 30)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--batch", default="1,16", help="batch sizes, each a row per configuration (seed 002: 1,16)")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "localllm-seed002"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    q8 = make("embedded", "Q8_0", work / "smollm2.Q8_0.gguf")
    q4km = make("embedded", "Q4_K_M", work / "smollm2.Q4_K_M.gguf")
    fp32 = make("embedded", "safetensors", work / "smollm2-fp32")
    gptq = make(fp32, "gptq", work / "smollm2-gptq-4bit-g64", gptq=GPTQOptions(group_size=64)) if fp32 else None

    configs = [BenchConfig("embedded", label="GGUF Q4_1 (embedded)")]
    configs += [BenchConfig(q8, label="GGUF Q8_0")] if q8 else []
    configs += [BenchConfig(q4km, label="GGUF Q4_K_M")] if q4km else []
    if fp32:
        configs += [BenchConfig(fp32, backend="transformers", label="transformers fp32"),
                    BenchConfig(fp32, backend="transformers", load_in="int8", label="bnb int8"),
                    BenchConfig(fp32, backend="transformers", load_in="nf4", label="bnb nf4")]
    configs += [BenchConfig(gptq, backend="transformers", label="GPTQ 4-bit g64")] if gptq else []
    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    configs = [dataclasses.replace(cfg, n_threads=args.threads, batch=b, label=f"{cfg.label} · batch {b}")
               for cfg in configs for b in batches]
    plan = BenchPlan(configs, prompt_tokens=30, gen_tokens=args.tokens, reps=args.reps, warmup=1)
    result = run_plan(plan, progress=lambda p: print(str(p), file=sys.stderr, flush=True))
    print(bench_export.to_markdown(result, layout="seed002"))
    print(bench_export.to_markdown(result))
    return 0 if all(r.status == "ok" for r in result.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
