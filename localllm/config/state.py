"""The one way localllm writes its state files (calibration, the binding and bandwidth caches, the
library list, quantize records, settings): several app instances may share them.

- write_text / write_json: a unique temp file in the same folder, fsync, os.replace. A reader sees the
  old file or the new one, never half of one, and two writers never share a temp file.
- update(path, fn): read, apply fn, write, all under an flock on `<name>.lock`, so two instances that
  each add a run keep both runs instead of the last writer's copy.
- read_json: a file that is not a JSON object is renamed `<name>.corrupt-<time>` with a logged warning,
  and {} comes back; it is never silently read as empty and then overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

TYPE_CHECKING = False  # typing costs ~3 ms of `localllm hw`'s start-up; mypy reads it as true
if TYPE_CHECKING:
    from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; writes stay atomic, concurrent updates are not serialized
    fcntl = None  # type: ignore[assignment]


def _warn(message: str, *args: object) -> None:
    """logging (and tempfile, below) are imported when needed: a read of a good file needs neither, and
    `localllm hw` reads its cached bandwidth through here (start-up time)."""
    import logging

    logging.getLogger(__name__).warning(message, *args)


def write_text(path: str | os.PathLike[str], text: str, replace: bool = True) -> Path:
    """Write atomically. replace=False: raise FileExistsError instead of replacing an existing file
    (a hard link claims the name, so two writers picking the same new name cannot both win)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)  # same folder: atomic
        else:
            _claim(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _claim(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network mounts): create the name, then fill it
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


def write_json(path: str | os.PathLike[str], data: Any, replace: bool = True, **dumps: Any) -> Path:
    return write_text(path, json.dumps(data, **dumps), replace=replace)


def lock_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive flock on the sidecar `<name>.lock` (never deleted: removing a lock file lets a
    waiter and a newcomer lock two different files)."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's JSON object; {} when it is missing or unreadable. A corrupt one is set aside."""
    return _read(Path(path), holding_lock=False)


def update(path: str | os.PathLike[str], fn: Callable[[dict[str, Any]], dict[str, Any]], **dumps: Any) -> dict[str, Any]:
    """Read the object, write fn(object), with no other update (of any process) in between."""
    path = Path(path)
    with locked(path):
        data = fn(_read(path, holding_lock=True))
        write_json(path, data, **dumps)
    return data


def _parse(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(the object, "") or (None, why not); ({}, "") when there is no file or it cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, ""
    except OSError as exc:
        _warn("cannot read %s (%s); using an empty one", path, exc.strerror or exc)
        return {}, ""
    try:
        data = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included
        return None, f"not valid JSON ({exc})"
    return (data, "") if isinstance(data, dict) else (None, f"a JSON {type(data).__name__}, not an object")


def _read(path: Path, holding_lock: bool) -> dict[str, Any]:
    data, why = _parse(path)
    if data is not None:
        return data
    # Set it aside under the lock, and only if it is still corrupt then: an update may have replaced
    # it with a good file since we read it.
    try:
        with contextlib.nullcontext() if holding_lock else locked(path):
            data, why = _parse(path)
            if data is not None:
                return data
            aside = _set_aside(path)
    except OSError as exc:  # no lock file in a read-only folder: leave the file, use nothing of it
        _warn("%s was %s; cannot lock it to move it aside (%s)", path, why, exc.strerror or exc)
        return {}
    _warn("%s was %s; kept it as %s and started from an empty one", path, why, aside)
    return {}


def _set_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        os.replace(path, aside)
    except OSError as exc:  # a read-only folder: it stays, and we still do not trust it
        _warn("cannot move %s aside (%s)", path, exc.strerror or exc)
        return path
    return aside
