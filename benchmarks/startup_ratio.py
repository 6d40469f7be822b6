"""Start-up of the light commands against a bare interpreter: `localllm --help` and `localllm hw` each
timed as a whole process, in turn with `python -c pass` from the same venv (A B A B ..., so a drift of
the machine's speed hits both), and the median of the pairwise ratios printed.

    python benchmarks/startup_ratio.py            # target (PRODUCT.md): each within 2x a bare python -c pass
    python benchmarks/startup_ratio.py -n 5       # quicker, noisier
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 2.0


def wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=21, help="pairs per command (default 21)")
    args = parser.parse_args()
    exe = str(Path(sys.executable).with_name("localllm"))
    # a home of its own whose bandwidth is already cached: `hw` measures it (~1 s) on its first run only
    env = dict(os.environ, LOCALLLM_HOME=os.environ.get("LOCALLLM_HOME") or tempfile.mkdtemp(prefix="localllm-startup-"))
    # An installed package runs from its .pyc files (pip compiles them; an editable install writes them
    # on first run). With PYTHONDONTWRITEBYTECODE set, every run here would compile localllm anew
    # (~10 ms of `hw`), which no user's start-up pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([exe, "hw"], stdout=subprocess.DEVNULL, env=env, check=True)
    bare = [sys.executable, "-c", "pass"]
    worst = 0.0
    for label, cmd in (("localllm --help", [exe, "--help"]), ("localllm hw", [exe, "hw"])):
        wall(cmd, env), wall(bare, env)  # warm the page cache and the .pyc files
        ratios, ours, theirs = [], [], []
        for _ in range(args.runs):
            a, b = wall(cmd, env), wall(bare, env)
            ours.append(a), theirs.append(b), ratios.append(a / b)
        ratio = statistics.median(ratios)
        worst = max(worst, ratio)
        print(f"{label:<16} {statistics.median(ours) * 1e3:6.1f} ms vs python -c pass "
              f"{statistics.median(theirs) * 1e3:5.1f} ms: ratio {ratio:.2f} (target <= {TARGET:.1f})")
    print(f"verdict: worst ratio {worst:.2f}, {'within' if worst <= TARGET else 'over'} the {TARGET:.0f}x target")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
