"""CPU the TUI uses while it sits idle: the installed `localllm` started in a real terminal (tmux), the
embedded model loaded, nothing typed; the app process's CPU time (user + sys) over --seconds, as % of one
core, and the model worker's beside it.

    python benchmarks/idle_cpu.py            # target: the app under 1% of a core over 30 s
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--load-timeout", type=float, default=120.0)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("tmux is not installed (apt-get install tmux)")
        return 2
    exe = Path(sys.executable).with_name("localllm")
    home = tempfile.mkdtemp(prefix="localllm-idle-")
    session = f"localllm-idle-{os.getpid()}"
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40",
         f"env LOCALLLM_HOME={home} {exe}")
    try:
        deadline = time.monotonic() + args.load_timeout
        while "ready" not in tmux("capture-pane", "-p", "-t", session):
            if time.monotonic() > deadline:
                print("the model did not load in time:\n" + tmux("capture-pane", "-p", "-t", session))
                return 2
            time.sleep(0.5)
        pane_pid = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
        app = next(p for p in [psutil.Process(pane_pid), *psutil.Process(pane_pid).children(recursive=True)]
                   if "localllm" in " ".join(p.cmdline()) and "worker_main" not in " ".join(p.cmdline())
                   and "env" != p.name())
        worker = next(p for p in app.children(recursive=True) if "worker_main" in " ".join(p.cmdline()))
        time.sleep(3.0)  # the load's own tail (estimate, first memory samples) is not idle time
        before = {p: sum(p.cpu_times()[:2]) for p in (app, worker)}
        start = time.monotonic()
        time.sleep(args.seconds)
        wall = time.monotonic() - start
        used = {p: sum(p.cpu_times()[:2]) - before[p] for p in (app, worker)}
        app_pct, worker_pct = 100 * used[app] / wall, 100 * used[worker] / wall
        print(f"idle for {wall:.1f} s with the embedded model loaded, nothing typed ({psutil.cpu_count()} CPUs)")
        print(f"app process    {used[app] * 1000:7.0f} ms CPU = {app_pct:5.2f}% of one core (target < 1%)")
        print(f"model worker   {used[worker] * 1000:7.0f} ms CPU = {worker_pct:5.2f}% of one core")
        print("OK" if app_pct < 1.0 else "ABOVE TARGET")
        return 0 if app_pct < 1.0 else 1
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
