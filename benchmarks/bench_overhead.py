"""Decode speed of `localllm bench` against a bare llama-cpp-python loop, side by side.

Runs a one-configuration bench plan on the embedded model (worker process, pipe, Meter: the real
`localllm bench` path) and, from its progress callback after every run while its worker sits idle, the
bare `Llama.generate()` loop of decode_ratio.py in this process: same model, prompt length in tokens,
sampling, seed, threads and number of new tokens. Prints decode tok/s (mean ± stddev) and the ratio.

    python benchmarks/bench_overhead.py            # target >= 0.97
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_ratio import Bare, sampling, summary  # noqa: E402
from quiet import decode_args  # noqa: E402

from localllm.bench.plan import BenchConfig, BenchPlan  # noqa: E402
from localllm.bench.runs import run_plan  # noqa: E402
from localllm.models.embedded import embedded_model_path  # noqa: E402

TARGET = 0.97


def main() -> int:
    parser = decode_args(__doc__.splitlines()[0])
    args = parser.parse_args()
    path = str(embedded_model_path())
    bare = Bare(path, args.threads, args.ctx)
    bare.run(args.tokens, sampling(args.tokens, args.seed))  # the bare loop's own warm-up
    print(f"model {Path(path).name} · prompt {len(bare.tokens)} tok · {args.tokens} new tok · "
          f"{args.threads} threads · {args.reps} reps after {args.warmup} warm-up · seed {args.seed}")
    base: list[float] = []

    def interleave(p) -> None:
        if p.phase in ("warmup", "rep"):
            rate = bare.run(args.tokens, sampling(args.tokens, args.seed))
            if p.phase == "rep":
                base.append(rate)

    plan = BenchPlan([BenchConfig("embedded", n_threads=args.threads, n_ctx=args.ctx)],
                     prompt_tokens=len(bare.tokens), gen_tokens=args.tokens, reps=args.reps,
                     warmup=args.warmup, seed=args.seed)
    row = run_plan(plan, progress=interleave).rows[0]
    if row.status != "ok":
        print(f"bench failed: {row.reason}")
        return 1
    ours = [rep["decode_tok_s"] for rep in row.reps]
    ratio = statistics.mean(ours) / statistics.mean(base)
    print(summary("bare Llama.generate()", base))
    print(summary("localllm bench", ours))
    print(f"ratio bench/bare: {ratio:.3f} (target >= {TARGET:.2f}) "
          f"{'OK' if ratio >= TARGET else 'BELOW TARGET'}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
