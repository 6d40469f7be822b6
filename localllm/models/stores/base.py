"""What every store scanner shares: a found model (Found, its Source), a scan's result, and reading
folders and small JSON files that may be unreadable, too large or gone."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localllm.errors import LocalLLMError

TOOLS = ("ollama", "lmstudio", "llamacpp", "gpt4all", "jan", "folder")
TOOL_NAMES = {"ollama": "Ollama", "lmstudio": "LM Studio", "llamacpp": "llama.cpp", "gpt4all": "GPT4All",
              "jan": "Jan", "folder": "a model folder"}
_MAX_SMALL = 1 << 20  # manifests, params and settings files larger than this are not what they claim


class StoreError(LocalLLMError):
    """A store ref (`ollama:NAME`, `lmstudio:PUB/MODEL`) names nothing usable; the message says what exists."""


@dataclass(frozen=True)
class Source:
    """One place a model file is known: the tool, that tool's name for it, and the file."""

    tool: str  # one of TOOLS (and "embedded" | "hf-cache" | "path" from the library)
    name: str  # "smollm2:135m", "bartowski/Llama-3.2-1B-GGUF/Llama-3.2-1B-Q4_K_M.gguf", a path
    path: str
    projector: str = ""  # a vision projector beside it (Ollama's projector layer, LM Studio's mmproj file)
    params: str = ""  # Ollama's params layer, as compact JSON text
    digest: str = ""  # Ollama's blob digest: the sha256 of the whole file
    system: str = ""  # Ollama's system layer: the Modelfile's SYSTEM prompt

    @property
    def ref(self) -> str:
        """What `-m` (and `localllm models rm`) takes for it."""
        if self.tool in ("ollama", "lmstudio"):
            return f"{self.tool}:{self.name}"
        return self.path if self.tool in TOOLS else self.name  # library sources: their entry id

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tool": self.tool, "name": self.name, "path": self.path}
        if self.projector:
            out["projector"] = self.projector
        if self.params:
            out["params"] = json.loads(self.params)
        if self.digest:
            out["digest"] = self.digest
        return out


@dataclass(frozen=True)
class Found:
    source: Source
    parts: tuple[Path, ...]  # the GGUF, or its split parts in order; () when broken
    status: str = "ok"  # "ok" | "incomplete" (split parts missing) | "broken" | "unsupported"
    detail: str = ""


@dataclass
class Scan:
    found: list[Found] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # folders skipped, and why


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def _xdg(var: str, default: str) -> Path:
    """$XDG_DATA_HOME, $XDG_CONFIG_HOME, $XDG_CACHE_HOME, or their defaults under HOME."""
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else _home() / default


def _unique(paths: list[Path]) -> list[Path]:
    out, seen = [], set()
    for p in paths:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _small_text(path: Path) -> str:
    """A small UTF-8 text file's content; "" when it is missing, unreadable, too large or not UTF-8."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_SMALL + 1)
        return raw.decode("utf-8") if len(raw) <= _MAX_SMALL else ""
    except (OSError, UnicodeDecodeError):
        return ""


def _small_json(path: Path) -> Any:
    """A small JSON file's value; None when it is missing, unreadable, too large or not JSON."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_SMALL + 1)
        return json.loads(raw) if len(raw) <= _MAX_SMALL else None
    except (OSError, ValueError):
        return None


def _entries(folder: Path, scan: Scan, what: str) -> list[os.DirEntry[str]]:
    """A folder's entries, sorted; [] with a note when it cannot be read (and silently when absent)."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        scan.notes.append(f"{what}: skipped {folder}: {exc.strerror or exc}")
        return []


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False
