"""`localllm quantize SRC --to TYPE`: make the quantization you are missing on this machine; the result
is recorded and added to the library."""

from __future__ import annotations

import argparse
import sys

from localllm.cli.commands import summary


def register(sub) -> None:
    p = sub.add_parser(
        "quantize", help=summary(__name__),
        description="Quantize on the device. TYPE: a GGUF type (Q4_K_M, Q5_K_M, Q8_0, Q4_0, F16 ...; from "
                    "a GGUF, with llama.cpp's own quantizer), 'safetensors' (a full-precision checkpoint "
                    "from a GGUF, for bitsandbytes and GPTQ) or 'gptq' (from a checkpoint folder, with "
                    "GPTQModel in its own environment: see --setup-gptq). Before it runs, the job's disk "
                    "and memory needs are checked; the result goes to <home>/models unless --out says "
                    "where, with a record of how it was made, and joins the library.")
    p.add_argument("src", metavar="SRC", nargs="?", help="a GGUF file, a checkpoint folder, or 'embedded'")
    p.add_argument("--to", dest="target", metavar="TYPE", help="what to make (see above)")
    p.add_argument("-o", "--out", metavar="PATH", help="output file or folder (default: under <home>/models)")
    p.add_argument("--no-requantize", action="store_true",
                   help="refuse a source that is already quantized (re-quantizing loses more quality)")
    p.add_argument("--threads", type=int, default=0, help="quantizer threads (default: all)")
    p.add_argument("--bits", type=int, default=4, help="GPTQ bits: 2, 3, 4 or 8 (default 4)")
    p.add_argument("--group-size", type=int, default=128,
                   help="GPTQ group size; must divide the hidden size (default 128)")
    p.add_argument("--act-order", action="store_true", help="GPTQ act-order (desc_act)")
    p.add_argument("--asym", action="store_true", help="GPTQ asymmetric quantization")
    p.add_argument("--samples", type=int, default=64, help="GPTQ calibration samples (default 64)")
    p.add_argument("--plan", action="store_true", help="print the checked plan, run nothing")
    p.add_argument("--setup-gptq", action="store_true",
                   help="create GPTQModel's environment (torch >= 2.14.1 and gptqmodel, several GB)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from localllm.quantize.jobs import GPTQOptions, plan_job, run_job

    if args.setup_gptq:
        from localllm.runtime.gptq_env import setup

        print(f"GPTQModel's Python: {setup(log=sys.stderr)}")
        return 0
    if not args.src or not args.target:
        print("error: give a source and --to TYPE, e.g. localllm quantize embedded --to Q8_0", file=sys.stderr)
        return 2
    gptq = GPTQOptions(bits=args.bits, group_size=args.group_size, desc_act=args.act_order, sym=not args.asym,
                       calibration_samples=args.samples)
    plan = plan_job(args.src, args.target, args.out, gptq=gptq, allow_requantize=not args.no_requantize)
    print(f"plan: {plan.describe()}", file=sys.stderr)
    if args.plan:
        return 0
    from localllm.cli.progress import ProgressBar

    bar = ProgressBar(unit="tensors")

    def progress(done: int, total: int) -> None:
        bar.update(done, total, f"quantizing to {plan.target}", final=done == total,
                   plain=f"{int(100 * done / total) if total else 0:3d}% ({done}/{total})")

    try:
        result = run_job(plan, progress=progress, threads=args.threads)
    finally:
        bar.close()
    for path in result.stale_removed:
        print(f"removed {path}, left half-written by an earlier run that was killed", file=sys.stderr)
    print(f"wrote {result.path} in {result.seconds:.1f} s; in the library as {result.library_id}")
    return 0
