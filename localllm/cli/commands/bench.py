"""`localllm bench`: side-by-side timing runs; progress on stderr, the table on stdout."""

from __future__ import annotations

import argparse
import sys


def _gpu_layers(text: str) -> int:
    from localllm.cli.main import gpu_layers_arg

    return gpu_layers_arg(text)


def register(sub) -> None:
    p = sub.add_parser("bench", help="time models side by side (load, TTFT, tok/s, CPU, memory)",
                       description="Run each model in its own process: a warm-up, then repetitions with "
                                   "fixed prompt and reply lengths. Results are saved under "
                                   "<home>/bench/ so runs can be compared.")
    p.add_argument("-m", "--model", action="append", dest="models", metavar="PATH", default=[],
                   help="a GGUF file, a checkpoint folder (FOLDER@int8, @nf4 or @fp4: bitsandbytes at "
                        "load), a server URL (URL#model-id), or 'embedded' (repeat for each "
                        "configuration; default: embedded)")
    p.add_argument("--preset", choices=["seed002", "llama-bench"], default="seed002",
                   help="seed002: prompt 30 / 30 new tokens (default); llama-bench: pp512 / tg128")
    p.add_argument("--reps", type=int, default=5, help="measured repetitions (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs, not counted (default 1)")
    p.add_argument("--tokens", type=int, default=None, help="new tokens per reply (EOS ignored)")
    p.add_argument("--prompt-tokens", type=int, default=None, help="prompt length in tokens, template included")
    p.add_argument("--prompts", default=None, help="prompt set: short, long, or a file (one per paragraph)")
    p.add_argument("--threads", default="0", help="CPU threads; a list such as 1,2 runs each (default: cores)")
    p.add_argument("--gpu-layers", type=_gpu_layers, default="auto", metavar="auto|N",
                   help="layers to offload to the GPU: auto (the load plan places them; default), N, -1, 0")
    p.add_argument("--ctx", type=int, default=2048, help="context size (default 2048)")
    p.add_argument("--seed", type=int, default=42, help="load and sampling seed (default 42)")
    p.add_argument("--perplexity", action="store_true", help="add perplexity on a shipped public-domain text")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="print JSON")
    fmt.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="print CSV")
    fmt.add_argument("--md", dest="fmt", action="store_const", const="md", help="print Markdown (default)")
    p.add_argument("--layout", choices=["full", "seed002"], default="full",
                   help="Markdown columns: every column, or seed 002's (load s, latency ms, tok/s, peak MB)")
    p.add_argument("--out", metavar="FILE", help="also write the export to FILE")
    p.add_argument("--compare", metavar="FILE", help="a saved result (.json) to compare this run against")
    p.add_argument("--no-save", action="store_true", help="do not save the result under <home>/bench/")
    p.set_defaults(func=run, fmt="md")


def _threads(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"error: --threads takes numbers such as 4 or 1,2,4 (got {text!r})") from None
    return values or [0]


def _load_in(spec: str) -> tuple[str, str]:
    """`folder@nf4` -> (folder, "nf4"): a checkpoint quantized by bitsandbytes as it loads."""
    model, sep, how = spec.rpartition("@")
    if sep and how in ("int8", "nf4", "fp4", "none"):
        return model, how
    return spec, "none"


def build_plan(args: argparse.Namespace):
    from localllm.bench.runs import BenchConfig, BenchPlan
    from localllm.chat.session import detect_backend

    configs = []
    from localllm.models.embedded import EMBEDDED

    for spec in args.models or [EMBEDDED]:
        model, load_in = _load_in(spec)
        backend = "llama_cpp" if model == EMBEDDED else detect_backend(model)
        if load_in != "none" and backend != "transformers":
            raise SystemExit(f"error: @{load_in} (bitsandbytes at load) needs a checkpoint folder, not {model}")
        configs += [BenchConfig(model=model, backend=backend, load_in=load_in, n_threads=t,
                                n_gpu_layers=args.gpu_layers, n_ctx=args.ctx) for t in _threads(args.threads)]
    return BenchPlan.from_preset(args.preset, configs, reps=args.reps, warmup=args.warmup,
                                 gen_tokens=args.tokens, prompt_tokens=args.prompt_tokens,
                                 prompts=args.prompts, seed=args.seed, perplexity=args.perplexity)


def render(result, fmt: str, layout: str = "full") -> str:
    from localllm.bench import export as bench_export

    if fmt == "json":
        return bench_export.to_json(result) + "\n"
    if fmt == "csv":
        return bench_export.to_csv(result)
    return bench_export.to_markdown(result, layout)


def run(args: argparse.Namespace) -> int:
    from localllm.bench import results as bench_results
    from localllm.bench.export import compare_markdown
    from localllm.bench.runs import run_plan

    plan = build_plan(args)
    plan.validate()  # refuse zero repetitions and friends before any process starts
    baseline = bench_results.load(args.compare) if args.compare else None
    result = run_plan(plan, progress=lambda p: print(p, file=sys.stderr, flush=True))
    if not args.no_save:
        print(f"saved {bench_results.save(result)}", file=sys.stderr)
    text = render(result, args.fmt, args.layout)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {args.out}", file=sys.stderr)
        text = render(result, "md", args.layout)
    sys.stdout.write(text)
    if baseline is not None:
        before = baseline.manifest.get("date", args.compare)
        sys.stdout.write("\n" + compare_markdown(bench_results.compare(baseline, result), before,
                                                 result.manifest.get("date", "now")))
    if result.cancelled:
        return 130
    return 1 if any(r.status == "failed" for r in result.rows) else 0
