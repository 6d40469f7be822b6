"""The benchmark scripts still run against today's code, at the smallest sizes: they are how the speed
and memory targets are checked, and they drive the app's own objects (the TUI's chat screen, the
session, bench), so a refactor can break one without any other test noticing (decode_ratio.py --mode tui
read app.pacer after the pacer moved to the chat screen). What they measure is not asserted: only that
each runs to its verdict line. Exit 1 is a verdict (below target), not a crash."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each loads the real embedded model

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = ["--tokens", "16", "--reps", "1", "--warmup", "0"]

SCRIPTS = [
    ("decode_ratio.py", [*TINY, "--mode", "both"],
     [r"ratio session/bare: \d+\.\d+", r"TUI repaint interval settled", r"ratio tui/bare: \d+\.\d+"]),
    ("bench_overhead.py", TINY, [r"ratio bench/bare: \d+\.\d+"]),
    ("busy_ratio.py", TINY, [r"ratio app/bare \(busy\): \d+\.\d+"]),
    ("list_stores.py", ["-n", "50"], [r"cold listing: 50 store entries", r"fresh process: 50 store entries"]),
    ("startup_ratio.py", ["-n", "1"], [r"localllm --help .* ratio \d+\.\d+", r"verdict: worst ratio \d+\.\d+"]),
]


@pytest.mark.parametrize("script, args, verdicts", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_the_benchmark_runs_to_its_verdict(script, args, verdicts, tmp_path) -> None:
    env = dict(os.environ, LOCALLLM_HOME=str(tmp_path / "home"))
    run = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                         timeout=600, env=env, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode in (0, 1) and "Traceback" not in out, out[-3000:]
    for verdict in verdicts:
        assert re.search(verdict, out), f"{script} printed no {verdict!r}:\n{out[-3000:]}"
