"""LM Studio's folders (~/.lmstudio/models/<publisher>/<model>/*.gguf, the older
~/.cache/lm-studio/models, the downloadsFolder its settings.json names) and the folders named in the
settings' model_folders: GGUFs grouped by split base, mmproj files noted as projectors."""

from __future__ import annotations

import os
from pathlib import Path

from localllm.hub.repos import SPLIT_RE, split_base
from localllm.models.stores.base import (
    Found,
    Scan,
    Source,
    _entries,
    _home,
    _is_dir,
    _is_file,
    _small_json,
    _unique,
)

_FOLDER_DEPTH = 6
PARTIAL_PREFIXES = ("incomplete-", ".")  # GPT4All's unfinished downloads; hidden temporary files


def lmstudio_roots() -> list[Path]:
    home = _home()
    roots = [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]
    for settings in (home / ".lmstudio" / "settings.json", home / ".cache" / "lm-studio" / "settings.json"):
        data = _small_json(settings)
        if isinstance(data, dict) and isinstance(data.get("downloadsFolder"), str) and data["downloadsFolder"]:
            roots.append(Path(data["downloadsFolder"]).expanduser())
    return _unique(roots)


def folder_roots() -> list[Path]:
    from localllm.config.settings import load_settings_lenient

    return _unique([Path(p).expanduser() for p in load_settings_lenient()[0].model_folders])


def _is_projector(name: str) -> bool:
    return name.lower().startswith("mmproj")


def _gguf_groups(files: list[os.DirEntry[str]]) -> dict[str, list[Path]]:
    """Model GGUFs in one folder grouped by split base (model-00001-of-00003.gguf -> model.gguf)."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        if (f.name.lower().endswith(".gguf") and not _is_projector(f.name) and _is_file(f)
                and not f.name.startswith(PARTIAL_PREFIXES)):
            groups.setdefault(split_base(f.name), []).append(Path(f.path))
    return {k: sorted(v) for k, v in sorted(groups.items())}


def _folder_models(folder: Path, files: list[os.DirEntry[str]], tool: str, prefix: str | None) -> list[Found]:
    """prefix: the tool's name for the folder ("" at its root); None: models are named by their path."""
    projectors = [f.path for f in files if _is_projector(f.name) and f.name.lower().endswith(".gguf")]
    out = []
    for base, parts in _gguf_groups(files).items():
        name = str(parts[0]) if prefix is None else f"{prefix}/{base}" if prefix else base
        status, detail = "ok", ""
        if (m := SPLIT_RE.search(parts[0].name)) and len(parts) < int(m.group(2)):
            status, detail = "incomplete", f"{len(parts)} of {int(m.group(2))} parts present"
        out.append(Found(Source(tool, name, str(parts[0]), projectors[0] if projectors else ""), tuple(parts),
                         status, detail))
    return out


def scan_lmstudio(root: Path, scan: Scan) -> None:
    for publisher in _entries(root, scan, "lmstudio"):
        for model in _entries(Path(publisher.path), scan, "lmstudio") if _is_dir(publisher) else ():
            if _is_dir(model):
                files = _entries(Path(model.path), scan, "lmstudio")
                scan.found += _folder_models(Path(model.path), files, "lmstudio", f"{publisher.name}/{model.name}")


def scan_folder(root: Path, scan: Scan) -> None:
    scan_tree(root, scan, "folder", None)


def scan_tree(root: Path, scan: Scan, tool: str, prefix: str | None = "", depth: int = 0) -> None:
    """Every GGUF under root (hidden folders skipped, _FOLDER_DEPTH deep), named by its path under root
    (prefix "") or by its full path (prefix None)."""
    entries = _entries(root, scan, tool)
    scan.found += _folder_models(root, entries, tool, prefix)
    if depth < _FOLDER_DEPTH:
        for entry in entries:
            if _is_dir(entry) and not entry.name.startswith("."):
                sub = None if prefix is None else f"{prefix}/{entry.name}" if prefix else entry.name
                scan_tree(Path(entry.path), scan, tool, sub, depth + 1)


def lmstudio_hits(found: list[Found], key: str) -> list[Found]:
    """PUBLISHER/MODEL: every model in that folder; PUBLISHER/MODEL/FILE: that file (with or without
    .gguf; a split model by its base name or its first part's)."""
    folder, _, file = key.rpartition("/")
    out = []
    for f in found:
        name = f.source.name.lower()
        where, _, base = name.rpartition("/")
        if key and (where == key or where == folder and file in
                    (base, base.removesuffix(".gguf"), Path(f.source.path).name.lower())):
            out.append(f)
    return out
