"""The folders other desktop tools download GGUFs to, read like LM Studio's (every *.gguf under them,
named by its path there):

    llamacpp  $LLAMA_CACHE, else $XDG_CACHE_HOME/llama.cpp or ~/.cache/llama.cpp: where llama.cpp's
              `-hf` / `--model-url` kept downloads before they moved to the HF cache (flat
              <owner>_<repo>_<file>.gguf files beside their .json etags)
    gpt4all   the desktop app's download path, $XDG_DATA_HOME/nomic.ai/GPT4All or
              ~/.local/share/nomic.ai/GPT4All (~/Library/Application Support/nomic.ai/GPT4All on macOS),
              the modelPath its settings (~/.config/nomic.ai/GPT4All.ini) name, and the Python bindings'
              ~/.cache/gpt4all; its unfinished downloads (incomplete-*.gguf) are left out
    jan       Jan's data folder: <data>/llamacpp/models/<id>/model.gguf (with model.yml) in ~/.local/share/Jan/data
              or ~/.config/Jan/data (~/Library/Application Support/Jan/data on macOS), and the older
              ~/jan/models/<id>/*.gguf (with model.json)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from localllm.models.stores.base import Scan, _home, _unique, _xdg
from localllm.models.stores.folders import scan_tree

_MAX_INI = 1 << 20


def llamacpp_roots() -> list[Path]:
    env = os.environ.get("LLAMA_CACHE")
    roots = [Path(env).expanduser()] if env else []
    return _unique([*roots, _xdg("XDG_CACHE_HOME", ".cache") / "llama.cpp"])


def _gpt4all_model_path(ini: Path) -> Path | None:
    """The modelPath= line of GPT4All's settings (Qt's INI: `[General]`, `modelPath=/home/me/models`)."""
    try:
        with open(ini, encoding="utf-8", errors="replace") as fh:
            text = fh.read(_MAX_INI)
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "modelPath" and value.strip():
            return Path(value.strip().strip('"')).expanduser()
    return None


def gpt4all_roots() -> list[Path]:
    home = _home()
    roots = [_xdg("XDG_DATA_HOME", ".local/share") / "nomic.ai" / "GPT4All"]
    if sys.platform == "darwin":
        roots.append(home / "Library" / "Application Support" / "nomic.ai" / "GPT4All")
    configured = _gpt4all_model_path(_xdg("XDG_CONFIG_HOME", ".config") / "nomic.ai" / "GPT4All.ini")
    if configured is not None:
        roots.append(configured)
    roots.append(home / ".cache" / "gpt4all")
    return _unique(roots)


def jan_roots() -> list[Path]:
    home = _home()
    data = [_xdg("XDG_DATA_HOME", ".local/share") / "Jan" / "data", _xdg("XDG_CONFIG_HOME", ".config") / "Jan" / "data"]
    if sys.platform == "darwin":
        data.append(home / "Library" / "Application Support" / "Jan" / "data")
    return _unique([*(d / "llamacpp" / "models" for d in data), home / "jan" / "models"])


def scan_llamacpp(root: Path, scan: Scan) -> None:
    scan_tree(root, scan, "llamacpp")


def scan_gpt4all(root: Path, scan: Scan) -> None:
    scan_tree(root, scan, "gpt4all")


def scan_jan(root: Path, scan: Scan) -> None:
    scan_tree(root, scan, "jan")
