"""What a file is, read once per file version: its identity (size + sha256 of the first and last MiB:
the same GGUF wherever it is), its quant, architecture and context from the header. Kept in localllm's
home (file_facts.json, through config.state) by inode, mtime and size, so a warm listing reads no header."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localllm import config
from localllm.config import state

log = logging.getLogger(__name__)

HEAD_BYTES = 1 << 20  # the header and, for most vocabularies, the tensor table; plus the last MiB
FACTS_FILE = "file_facts.json"
_MAX_FACTS = 20_000
_ROW = 10  # size, mtime, identity, quant, damage, arch, context, layers, hidden, params


@dataclass(frozen=True)
class Facts:
    identity: str  # "<size>-<sha256 of the first and last MiB>": one file, wherever it is
    quant: str | None
    damage: str  # why the header is unusable; "" when it is fine
    arch: str
    context: int
    layers: int = 0  # {arch}.block_count (0: not read)
    hidden: int = 0  # {arch}.embedding_length
    params: int = 0  # weights in the tensor table


_memo: dict[str, list[Any]] = {}
_dirty: dict[str, list[Any]] = {}
_loaded = False
_lock = threading.Lock()  # the TUI lists from worker threads


def facts_path() -> Path:
    return config.home() / FACTS_FILE


def _key(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


def facts(path: str | os.PathLike[str]) -> Facts | None:
    """The file's facts (None when it is gone), computed once per file version and kept in
    localllm's home: the header walk of a large vocabulary takes a second."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    with _lock:
        return _facts(Path(path), st)


def _facts(path: Path, st: os.stat_result) -> Facts:
    global _loaded
    if not _loaded:
        stored = state.read_json(facts_path()).get("files")
        if isinstance(stored, dict):
            _memo.update({k: v for k, v in stored.items() if isinstance(v, list) and len(v) == _ROW})
        _loaded = True
    key, row = _key(st), _memo.get(_key(st))
    if not (row and row[0] == st.st_size and row[1] == st.st_mtime_ns):
        row = [st.st_size, st.st_mtime_ns, *_compute(path, st.st_size)]
        _memo[key] = _dirty[key] = row
    return Facts(str(row[2]), row[3] or None, str(row[4]), str(row[5]), int(row[6] or 0), int(row[7] or 0),
                 int(row[8] or 0), int(row[9] or 0))


def _compute(path: Path, size: int) -> list[Any]:
    from localllm.errors import ModelFileError
    from localllm.models.gguf_check import read_layout

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            digest.update(fh.read(HEAD_BYTES))
            if size > 2 * HEAD_BYTES:
                fh.seek(size - HEAD_BYTES)
            digest.update(fh.read(HEAD_BYTES))
    except OSError as exc:
        return [f"{size}-unreadable", None, f"cannot read it ({exc.strerror or exc})", "", 0, 0, 0, 0]
    identity = f"{size}-{digest.hexdigest()}"
    try:
        layout = read_layout(path)
    except ModelFileError as exc:
        return [identity, None, exc.reason, "", 0, 0, 0, 0]
    info = layout.info
    return [identity, info.quant if info.quant != "unknown" else None, "", info.architecture,
            int(info.context_length or 0), _int(layout.arch_value("block_count")),
            _int(layout.arch_value("embedding_length")), int(info.n_params)]


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def save_facts() -> None:
    """Write the facts computed since the last save (one locked update per listing)."""
    with _lock:
        if not _dirty:
            return
        new = dict(_dirty)
        _dirty.clear()

    def merge(data: dict[str, Any]) -> dict[str, Any]:
        got = data.get("files")
        files: dict[str, Any] = got if isinstance(got, dict) else {}
        files = {**files, **new}
        if len(files) > _MAX_FACTS:  # files come and go: keep the newest computed
            files = dict(list(files.items())[-_MAX_FACTS:])
        return {"version": 1, "files": files}

    try:
        state.update(facts_path(), merge)
    except OSError as exc:  # a read-only home: the facts are computed again next time
        log.info("cannot save %s: %s", facts_path(), exc.strerror or exc)
