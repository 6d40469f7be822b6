"""How children end (runtime.children): with the app, however it dies, and with their own children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from localllm.runtime.children import run_to_end
from tests.fake_jobs import read_ready, running_in_group, wait_until

ROOT = Path(__file__).resolve().parents[2]
GONE_S = 5.0  # the bound: no child of a killed app left after 5 s
START_S = 120.0  # starting Pythons on a loaded 2-core host

# A job child that starts a grandchild in its group, says so, then prints nothing and never ends.
SILENT_CHILD = """
import os, subprocess, sys, time
grandchild = subprocess.Popen(["sleep", "600"])
ready = sys.argv[1]
with open(ready + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
os.replace(ready + ".tmp", ready)
print("ready", file=sys.stderr, flush=True)
time.sleep(600)
"""

# The app's pattern: spawn from a worker thread that ends while the child lives on.
DRIVER = """
import sys, threading, time
from localllm.runtime.children import spawn
procs = []
t = threading.Thread(target=lambda: procs.append(spawn([sys.executable, "-c", sys.argv[1], sys.argv[2]])))
t.start()
t.join()
print(procs[0].pid, flush=True)
time.sleep(600)
"""


@pytest.fixture
def reap():
    """Process groups a failed test must not leave running."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_sigkilled_parent_leaves_no_child_or_grandchild(tmp_path, reap) -> None:
    ready = tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    app = subprocess.Popen([sys.executable, "-c", DRIVER, SILENT_CHILD, str(ready)], env=env,
                           stdout=subprocess.PIPE, text=True)
    try:
        pgid = int(app.stdout.readline())  # the child leads its own group
        reap.append(pgid)
        wait_until(ready.exists, START_S, "the child and its grandchild")
        child, grandchild = read_ready(ready)
        # the spawning thread has ended: the children live on with the app
        assert child == pgid and os.getpgid(grandchild) == pgid
        assert sorted(running_in_group(pgid)) == sorted([child, grandchild])
    finally:
        app.kill()
        app.wait()
    wait_until(lambda: not running_in_group(pgid), GONE_S, f"group {pgid} to end after its app was killed")


def test_a_cancelled_job_takes_its_grandchildren_along(tmp_path, reap) -> None:
    ready = tmp_path / "ready"
    cancel = threading.Event()

    class Cancelled(Exception):
        pass

    def on_line(line: bytes) -> None:
        if line.strip() == b"ready":
            cancel.set()

    with pytest.raises(Cancelled):
        run_to_end([sys.executable, "-c", SILENT_CHILD, str(ready)], on_line, cancel, Cancelled)
    child, grandchild = read_ready(ready)
    reap.append(child)
    wait_until(lambda: not running_in_group(child), GONE_S, "the grandchild to be killed with the job")
