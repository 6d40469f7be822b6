"""Decode speed of localllm's chat path against a bare llama-cpp-python loop, on a quiet machine and with
one core kept busy by another process (a bounded CPU hog, as a browser or a build would), side by side.

Each phase alternates repetitions of the bare `Llama.generate()` loop (in this process) and localllm's
session path (worker process + pipe + meter) on the same model, prompt, sampling, seed and threads,
with a fixed token count, and prints decode tok/s (mean ± stddev) and the ratio app/bare.

    python benchmarks/busy_ratio.py                      # targets: busy >= 0.90, quiet >= 0.97
    python benchmarks/busy_ratio.py --policy passive     # the worker's OMP_WAIT_POLICY, to compare

The hog is started from this process, in its session (as a program the user runs beside the app is in
the terminal's or the desktop's scheduling group), and killed at the end of each busy phase at the latest.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_ratio import Bare, run_session, summary  # noqa: E402
from quiet import decode_args  # noqa: E402

from localllm.models.embedded import embedded_model_path  # noqa: E402

HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def start_hog(seconds: float) -> subprocess.Popen:
    """One busy core for at most `seconds` (it ends itself even if this script is killed)."""
    return subprocess.Popen([sys.executable, "-c", HOG.format(seconds=seconds)])


def phase(name: str, args, bare: Bare, path: str) -> float:
    hog = start_hog(args.hog_seconds) if name == "busy" else None
    try:
        if hog is not None:
            time.sleep(0.5)  # let the scheduler see it
        base, ours = run_session(args, bare, path)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    ratio = statistics.mean(ours) / statistics.mean(base)
    print(f"-- {name} machine" + (" (one core kept busy by another process)" if hog else ""))
    print(summary("bare Llama.generate()", base) + f"  median {statistics.median(base):.1f}")
    print(summary("localllm session path", ours) + f"  median {statistics.median(ours):.1f}")
    print(f"ratio app/bare ({name}): {ratio:.3f} of means, "
          f"{statistics.median(ours) / statistics.median(base):.3f} of medians")
    return ratio


def main() -> int:
    parser = decode_args(__doc__.splitlines()[0], tokens=100, reps=8, ctx=1024)
    parser.add_argument("--model", default=None, help="a GGUF file (default: the embedded model)")
    parser.add_argument("--policy", choices=["passive", "active"], default=None,
                        help="set the worker's OMP_WAIT_POLICY (default: libgomp's, as localllm leaves it)")
    parser.add_argument("--hog-seconds", type=float, default=300.0, help="the hog's own time limit")
    parser.add_argument("--only", choices=["quiet", "busy"], default=None)
    parser.add_argument("--new-session", action="store_true",
                        help="start the worker in a new session, as localllm did before (to compare)")
    args = parser.parse_args()
    path = args.model or str(embedded_model_path())
    bare = Bare(path, args.threads, args.ctx)  # loads libgomp here: the policy below is the worker's only
    if args.policy:
        os.environ["OMP_WAIT_POLICY"] = args.policy
    if args.new_session:  # a session is its own autogroup: the old way, for the before/after figure
        import localllm.runtime.worker as worker

        popen = worker.subprocess.Popen

        def new_session(*a, process_group=None, **k):
            return popen(*a, start_new_session=True, **k)

        worker.subprocess = type("Subprocess", (), {"Popen": staticmethod(new_session),
                                                    "PIPE": subprocess.PIPE,
                                                    "TimeoutExpired": subprocess.TimeoutExpired})
    policy = os.environ.get("OMP_WAIT_POLICY") or "libgomp's default"
    print(f"model {os.path.basename(path)} · {args.tokens} tokens · {args.threads} threads · "
          f"{args.reps} reps after {args.warmup} warm-up · worker OMP_WAIT_POLICY={policy} · "
          f"{os.cpu_count()} CPUs · worker in {'a new session' if args.new_session else 'its own process group'}")
    targets = {"quiet": 0.97, "busy": 0.90}
    ok = True
    for name in ([args.only] if args.only else ["quiet", "busy"]):
        ratio = phase(name, args, bare, path)
        met = ratio >= targets[name]
        print(f"   target >= {targets[name]:.2f}: {'OK' if met else 'BELOW TARGET'}")
        ok = ok and met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
