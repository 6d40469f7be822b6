"""`localllm bench`: side-by-side timing runs; progress on stderr, the table on stdout."""

from __future__ import annotations

import argparse
import sys

from localllm.cli.commands import summary


def _gpu_layers(text: str) -> int:
    from localllm.cli.main import gpu_layers_arg

    return gpu_layers_arg(text)


def register(sub) -> None:
    from localllm.cli.main import setting

    p = sub.add_parser("bench", help=summary(__name__),
                       description="Run each model in its own process: a warm-up, then repetitions with "
                                   "fixed prompt and reply lengths. Results are saved under "
                                   "<home>/bench/ so runs can be compared.")
    p.add_argument("-m", "--model", action="append", dest="models", metavar="PATH", default=[],
                   help="a GGUF file, a checkpoint folder (FOLDER@int8, @nf4 or @fp4: bitsandbytes at "
                        "load), a server URL (URL#model-id), ollama:NAME[:TAG], "
                        "lmstudio:PUBLISHER/MODEL[/FILE], or 'embedded' (repeat for each "
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
    p.add_argument("--context", "--ctx", type=setting("context"), default=2048, dest="context", help="context size (default 2048)")
    p.add_argument("--kv-type", "--kv", default="f16", dest="kv_type", metavar="TYPE[,TYPE...]",
                   help="llama.cpp KV-cache types, each a row: f16 (default), q8_0, q4_0, e.g. f16,q8_0")
    p.add_argument("--seed", type=int, default=42, help="load and sampling seed (default 42)")
    p.add_argument("--perplexity", action="store_true", help="add perplexity on a shipped public-domain text")
    p.add_argument("--batch", default=None, metavar="B[,B...]",
                   help="generate B prompts together (seed 002's batch column), e.g. 1,16: latency is the "
                        "time per decode step, tok/s is B x tokens / decode time")
    p.add_argument("--depth", default=None, metavar="D[,D...]",
                   help="decode with D tokens already in the context (llama-bench's -d), e.g. 0,512,2048")
    load = p.add_argument_group("serving load (a server URL: -m http://HOST:PORT[#model])")
    load.add_argument("--concurrency", default=None, metavar="N[,N...]",
                      help="parallel streams per level, e.g. 1,2,4,8: TTFT, ITL, TPOT and E2E percentiles, "
                           "req/s, tok/s, goodput and the knee")
    load.add_argument("--requests", type=int, default=None, help="requests per level (default 8)")
    load.add_argument("--duration", type=float, default=None, metavar="S", help="run each level S seconds instead")
    load.add_argument("--slo", default=None, metavar="SPEC",
                      help="latency target for goodput and the knee, e.g. ttft=500ms,tpot=50ms[,e2e=5s]")
    p.add_argument("--sqlite", metavar="FILE", help="append this run to FILE, one row per configuration and level")
    p.add_argument("--history", action="store_true", help="list saved runs (numbers for --compare) and exit")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="print JSON")
    fmt.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="print CSV")
    fmt.add_argument("--md", dest="fmt", action="store_const", const="md", help="print Markdown (default)")
    p.add_argument("--layout", choices=["full", "seed002"], default="full",
                   help="Markdown columns: every column, or seed 002's (load s, latency ms, tok/s, peak MB)")
    p.add_argument("--out", metavar="FILE", help="also write the export to FILE")
    p.add_argument("--compare", metavar="RUN", nargs="+",
                   help="a saved run (a number from --history, -1 for the newest, or a .json file) to compare "
                        "this run against; two runs: compare them and run nothing")
    p.add_argument("--no-save", action="store_true", help="do not save the result under <home>/bench/")
    p.set_defaults(func=run, fmt="md")


def _numbers(text: str | None, flag: str, default: list[int]) -> list[int]:
    if text is None:
        return default
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"error: {flag} takes numbers such as 4 or 1,2,4 (got {text!r})") from None
    return values or default


def _kv_types(text: str) -> list[str]:
    from localllm.config.defaults import KV_TYPES

    kinds = [k.strip() for k in text.split(",") if k.strip()] or ["f16"]
    wrong = [k for k in kinds if k not in KV_TYPES]
    if wrong:
        raise SystemExit(f"error: --kv takes {', '.join(KV_TYPES)} (got {', '.join(wrong)})")
    return kinds


def _threads(text: str) -> list[int]:
    return _numbers(text, "--threads", [0])


def build_plan(args: argparse.Namespace):
    from localllm.bench.plan import BenchConfig, BenchPlan
    from localllm.models.ref import ModelRef

    configs = []
    from localllm.models.embedded import EMBEDDED

    for spec in args.models or [EMBEDDED]:
        ref = ModelRef.parse(spec)
        if ref.load_in != "none" and ref.backend != "transformers":
            raise SystemExit(f"error: @{ref.load_in} (bitsandbytes at load) needs a checkpoint folder, not {ref.text}")
        configs += [BenchConfig(model=ref.text, backend=ref.backend, load_in=ref.load_in, n_threads=t,
                                n_gpu_layers=args.gpu_layers, n_ctx=args.context, batch=b, depth=d, kv_type=kv)
                    for t in _threads(args.threads) for b in _numbers(args.batch, "--batch", [0])
                    for d in _numbers(args.depth, "--depth", [0]) for kv in _kv_types(args.kv_type)]
    plan = BenchPlan.from_preset(args.preset, configs, reps=args.reps, warmup=args.warmup,
                                 gen_tokens=args.tokens, prompt_tokens=args.prompt_tokens,
                                 prompts=args.prompts, seed=args.seed, perplexity=args.perplexity)
    for cfg in plan.configs:  # a deep row gets the context it needs, and says so in its config
        cfg.n_ctx = max(cfg.n_ctx, plan.prompt_tokens + cfg.depth + plan.gen_tokens + 16)
    return plan


def render(result, fmt: str, layout: str = "full") -> str:
    from localllm.bench import export as bench_export

    if fmt == "json":
        return bench_export.to_json(result) + "\n"
    if fmt == "csv":
        return bench_export.to_csv(result)
    return bench_export.to_markdown(result, layout)


def run(args: argparse.Namespace) -> int:
    from localllm.bench import history
    from localllm.bench import results as bench_results
    from localllm.bench.export import compare_markdown
    from localllm.bench.runs import run_plan

    if args.history:
        sys.stdout.write(history.history_table(history.saved_runs()))
        return 0
    if args.compare and len(args.compare) > 2:
        raise SystemExit("error: --compare takes one saved run (to compare this run against) or two")
    if args.compare and len(args.compare) == 2:
        before, after = (history.load_ref(r) for r in args.compare)
        sys.stdout.write(compare_markdown(bench_results.compare(before, after), before.manifest.get("date", "?"),
                                          after.manifest.get("date", "?")))
        return 0
    if args.concurrency is not None:
        return run_sweep(args)
    plan = build_plan(args)
    plan.validate()  # refuse zero repetitions and friends before any process starts
    baseline = history.load_ref(args.compare[0]) if args.compare else None
    result = run_plan(plan, progress=lambda p: print(p, file=sys.stderr, flush=True))
    # The table first, then the files: a save that fails after a long run must not lose the results.
    text = render(result, args.fmt, args.layout)
    sys.stdout.write(render(result, "md", args.layout) if args.out else text)
    if baseline is not None:
        before = baseline.manifest.get("date", args.compare[0])
        sys.stdout.write("\n" + compare_markdown(bench_results.compare(baseline, result), before,
                                                 result.manifest.get("date", "now")))
    sys.stdout.flush()

    def save() -> None:
        saved = None
        if not args.no_save:
            saved = bench_results.save(result)
            print(f"saved {saved}", file=sys.stderr)
        if args.sqlite:
            run_id = saved.stem if saved else result.manifest.get("date", "")
            n = history.append_bench(args.sqlite, result, run_id)
            print(f"appended {n} row(s) to {args.sqlite} (table {history.TABLE})", file=sys.stderr)
        if args.out:
            _write(args.out, text)

    saved_ok = _saved(save)
    if result.cancelled:
        return 130
    return 1 if not saved_ok or any(r.status == "failed" for r in result.rows) else 0


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"wrote {path}", file=sys.stderr)


def _saved(save) -> bool:
    """Run `save` (the result's files); a failure is said on stderr and gives False, after the table
    was printed."""
    from localllm.errors import LocalLLMError

    try:
        save()
    except (OSError, LocalLLMError) as exc:
        why = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"error: the run finished but could not be saved ({why}). The table above is its only "
              "copy: keep it, then free space or fix the folder's permissions (or pass --no-save).",
              file=sys.stderr)
        return False
    return True


def run_sweep(args: argparse.Namespace) -> int:
    """--concurrency: a serving-load sweep against each server named with -m URL."""
    import json

    from localllm.bench import history
    from localllm.bench.load import Slo, SweepPlan, markdown
    from localllm.bench.load import run_sweep as sweep
    from localllm.config.redact import redact_text

    urls = [m for m in args.models if m.startswith(("http://", "https://"))]
    if not urls or len(urls) != len(args.models):
        raise SystemExit("error: --concurrency measures a server: give its URL with -m http://HOST:PORT[#model] "
                         "(for a local file, --batch generates several sequences together)")
    if args.requests is not None and args.duration is not None:
        raise SystemExit("error: give --requests or --duration, not both")
    levels = _numbers(args.concurrency, "--concurrency", [1])
    slo = Slo.parse(args.slo) if args.slo else Slo()
    rc = 0
    for url in urls:
        plan = SweepPlan(url, levels, requests=None if args.duration else (args.requests or 8),
                         duration_s=args.duration, prompt_tokens=args.prompt_tokens or 30,
                         gen_tokens=args.tokens or 30, slo=slo)
        plan.validate()
        result = sweep(plan, progress=lambda line: print(line, file=sys.stderr, flush=True))
        data = history.sweep_data(result)
        # printed first (as bench's table), and without the URL's user:pass@
        text = redact_text(json.dumps(data, indent=1) + "\n" if args.fmt == "json" else markdown(result))
        sys.stdout.write(text)
        sys.stdout.flush()

        def save(data: dict = data, text: str = text) -> None:
            saved = None
            if not args.no_save:
                saved = history.write_json(data, prefix="sweep-")
                print(f"saved {saved}", file=sys.stderr)
            if args.sqlite:
                n = history.append_sweep(args.sqlite, data, saved.stem if saved else data["date"])
                print(f"appended {n} row(s) to {args.sqlite} (table {history.TABLE})", file=sys.stderr)
            if args.out:
                _write(args.out, text)

        if not _saved(save):
            rc = 1
        if result.cancelled:
            return 130
        if result.stopped_reason or any(lv.failed for lv in result.levels):
            rc = 1
    return rc
