"""Matching the library's entries, once they are listed: the same GGUF found in several places made one
entry with several sources (by file identity), the copies of such an entry counted, and the entries a
store's server has loaded now marked. Apart from models.library, which finds the entries, because this
part only compares them: with each other, with the files on the disk, with what a server says."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from localllm.models import stores
from localllm.models.stores import serving

if TYPE_CHECKING:  # library imports this module; an entry's type is all this one needs of it
    from localllm.models.library import LibraryEntry


def merge_duplicates(entries: list[LibraryEntry]) -> list[LibraryEntry]:
    """One entry per file: a store's GGUF with the same identity (size and a hash of its first and
    last MiB, stores.facts) as an earlier complete entry becomes one of that entry's sources. Entries
    localllm manages (embedded, HF cache, added paths) are never merged with each other: each keeps
    its id, which `models rm` deletes by."""
    out: list[LibraryEntry] = []
    first: dict[str, int] = {}  # identity -> index in out
    for entry in entries:
        facts = stores.facts(entry.path) if entry.format == "gguf" and entry.usable and entry.path else None
        key = f"{facts.identity}+{entry.size_bytes}" if facts else None
        if key is not None and key in first and not entry.read_only:
            key = None  # two managed copies stay two entries (--dupes still counts the store's copies)
        if key is None or key not in first:
            if key is not None:
                first[key] = len(out)
            out.append(entry)
            continue
        kept = out[first[key]]
        out[first[key]] = replace(kept, sources=(*kept.sources, *entry.sources))
    return out


@dataclass(frozen=True)
class Duplicate:
    entry: LibraryEntry
    copies: int  # distinct files on the disk (hard links and symlinks to one file count once)
    wasted_bytes: int  # what all but one copy take


def duplicates(entries: list[LibraryEntry]) -> list[Duplicate]:
    """Entries found in more than one place, with the space the extra copies take."""
    out = []
    for entry in entries:
        if len(entry.sources) < 2:
            continue
        files = set()
        for src in entry.sources:
            try:
                st = os.stat(src.path)
            except OSError:
                continue
            files.add((st.st_dev, st.st_ino))
        out.append(Duplicate(entry, len(files), max(len(files) - 1, 0) * entry.size_bytes))
    return out


def mark_serving(entries: list[LibraryEntry]) -> list[LibraryEntry]:
    """Entries a store's server has loaded now get serving=True; a loaded model that fits more than
    one entry (an LM Studio id for a folder of several quants, the server naming no quant) marks none."""
    tools = {s.tool for e in entries if e.usable for s in e.sources} & {"ollama", "lmstudio"}
    served = serving.loaded(tools) if tools else []
    hits: dict[int, list[int]] = {}  # served index -> entry indexes
    for i, entry in enumerate(entries):
        for j, one in enumerate(served):
            if entry.usable and any(serving.matches(src, entry.quant, one) for src in entry.sources):
                hits.setdefault(j, []).append(i)
    marked = {found[0] for found in hits.values() if len(found) == 1}
    return [replace(e, serving=True) if i in marked else e for i, e in enumerate(entries)]
