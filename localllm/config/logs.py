"""Worker logs: the folder kept bounded (a file per worker start would grow forever), and the tail of
one log for the viewer (a long session's log can be many megabytes)."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

KEEP_LOGS = 50
TAIL_BYTES = 256 * 1024
# worker-<date>-<time>-<app pid>-<id>.log, as runtime.worker names them
_WORKER_LOG = re.compile(r"worker-\d{8}-\d{6}-(\d+)-[0-9a-f]+\.log")


def _alive(pid: int) -> bool:
    if os.name == "nt" or not 0 < pid < 2**31:  # Windows' os.kill(pid, 0) would end the process
        return os.name == "nt"
    try:
        os.kill(pid, 0)  # signal 0: only asks whether it exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def prune_worker_logs(folder: Path, keep: int = KEEP_LOGS) -> list[Path]:
    """Delete worker logs beyond the newest `keep` (by mtime); returns those deleted. A log named
    after a live app process (this one or another instance) is never deleted: its worker may still
    be writing it or the viewer showing it; it goes at a start after that app has ended."""
    logs = []
    for path in folder.glob("worker-*.log"):
        match = _WORKER_LOG.fullmatch(path.name)
        with contextlib.suppress(FileNotFoundError):  # another instance pruned it meanwhile
            if match:
                logs.append((path.stat().st_mtime_ns, path, int(match.group(1))))
    logs.sort(reverse=True)
    deleted = []
    for _, path, pid in logs[keep:]:
        if _alive(pid):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            deleted.append(path)
    return deleted


def read_tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last `limit` bytes of the file from a line start, after a line saying what was skipped."""
    with open(path, "rb") as fh:
        start = max(0, fh.seek(0, os.SEEK_END) - limit)
        fh.seek(start)
        data = fh.read(limit)  # at most limit, even if the worker appends meanwhile
    if not start:
        return data.decode(errors="replace")
    cut = data.find(b"\n") + 1  # drop the partial first line
    skipped = start + cut
    return (f"[{skipped / 2**20:.1f} MiB of earlier lines skipped; the whole log is {path}]\n"
            + data[cut:].decode(errors="replace"))
