"""Worker logs stay bounded: each worker start prunes the folder to the newest logs, never one an
app still running may be using; the viewer reads a long log's tail only."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from localllm.config import logs
from localllm.runtime.worker import WorkerClient

NO_SUCH_PID = 2**31 - 1  # above every pid_max: the app that wrote the log has ended


def _log(folder, n: int, pid: int = NO_SUCH_PID, age_s: float = 0.0):
    path = folder / f"worker-20250101-{n:06d}-{pid}-{n:04x}.log"
    path.write_text(f"log {n}\n")
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def test_starting_a_worker_keeps_the_newest_50_logs(tmp_path) -> None:
    # 60 logs, the name order opposite to the age order: pruning goes by mtime, not by name
    paths = [_log(tmp_path, n, age_s=60 * (n + 1)) for n in range(60)]
    other = tmp_path / "gptq-job.log"
    other.write_text("not a worker's")
    WorkerClient(log_dir=tmp_path)  # constructing is enough: no process is started
    left = sorted(tmp_path.glob("worker-*.log"))
    assert left == sorted(paths[:50])  # the 50 youngest
    assert other.exists()


def test_a_log_whose_app_is_still_running_is_never_pruned(tmp_path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        old_live = _log(tmp_path, 0, pid=live.pid, age_s=10_000)
        old_mine = _log(tmp_path, 1, pid=os.getpid(), age_s=10_000)
        old_dead = _log(tmp_path, 2, age_s=10_000)
        young = [_log(tmp_path, n, age_s=n) for n in range(3, 6)]
        deleted = logs.prune_worker_logs(tmp_path, keep=3)
    finally:
        live.stdin.close()
        live.wait(timeout=60)
    assert deleted == [old_dead]
    assert old_live.exists() and old_mine.exists() and all(p.exists() for p in young)


def test_the_viewer_reads_only_the_tail_of_a_long_log(tmp_path) -> None:
    path = tmp_path / "worker.log"
    lines = [f"line {i:07d} " + "x" * 80 for i in range(55_000)]  # about 5 MB
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 5 * 10**6
    text = logs.read_tail(path)
    head, *shown = text.splitlines()
    assert "earlier lines skipped" in head and str(path) in head
    assert shown[-1] == lines[-1] and shown[0] in lines  # whole lines, up to the last one
    assert shown == lines[-len(shown):]
    assert len(text.encode()) <= logs.TAIL_BYTES + len(head) + 1


def test_a_short_log_is_shown_whole(tmp_path) -> None:
    path = tmp_path / "worker.log"
    path.write_text("one\ntwo\n")
    assert logs.read_tail(path) == "one\ntwo\n"


def test_workers_started_in_the_same_second_each_get_their_own_log(tmp_path) -> None:
    # Each client is dropped before the next is made, so a name built from id() came back the same
    # and the second worker's log was appended to the first's (CI's KV-cache test read the wrong one).
    paths = [WorkerClient(log_dir=tmp_path).log_path for _ in range(20)]
    assert len(set(paths)) == 20
    assert all(logs._WORKER_LOG.fullmatch(p.name) for p in paths)  # pruning still recognises them
