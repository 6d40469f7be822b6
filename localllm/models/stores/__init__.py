"""Models other tools keep on this disk, found read-only: Ollama's store, LM Studio's folders, llama.cpp's
old cache, GPT4All's and Jan's model folders and the folders named in the settings (`model_folders`). Nothing here writes, links or moves anything inside
them; localllm's own record of what it read (`file_facts.json`) lives in localllm's home.

    ollama    $OLLAMA_MODELS or ~/.ollama/models (and /usr/share/ollama/.ollama/models, the Linux
              service's): manifests/<host>/<namespace>/<model>/<tag> are Docker-style JSON manifests;
              the application/vnd.ollama.image.model layer is the GGUF at blobs/sha256-<hex>
    lmstudio  ~/.lmstudio/models/<publisher>/<model>/*.gguf, the older ~/.cache/lm-studio/models and
              the downloadsFolder its settings.json names
    llamacpp, gpt4all, jan   their download folders (`apps`: where each looks)
    folder    every *.gguf under a folder the user added

A source that cannot be read becomes a note; the other sources are still listed. LOCALLLM_STORES
names the tools to read (comma-separated, e.g. "ollama"; "none": none; unset: all): the test suite
sets it so a developer's own stores stay out of the library the tests see.

Modules: `base` (Found, Source, reading folders), `ollama`, `folders` (LM Studio and user folders),
`apps` (llama.cpp's cache, GPT4All, Jan), `identity` (what a file is, cached), `serving` (what Ollama and
LM Studio have loaded now); this one scans them all and resolves `ollama:` / `lmstudio:` refs.
"""

from __future__ import annotations

import os
from pathlib import Path

from localllm.models.stores import apps, folders, ollama
from localllm.models.stores.base import TOOL_NAMES, TOOLS, Found, Scan, Source, StoreError
from localllm.models.stores.identity import FACTS_FILE, Facts, facts, save_facts

__all__ = ["FACTS_FILE", "PREFIXES", "STORES_ENV", "TOOLS", "TOOL_NAMES", "Facts", "Found", "Scan", "Source", "StoreError",
           "enabled_tools", "facts", "is_store_ref", "resolve", "resolve_found", "save_facts", "scan"]

PREFIXES = ("ollama:", "lmstudio:")  # the model refs (`chat -m ollama:smollm2:135m`)
STORES_ENV = "LOCALLLM_STORES"


def enabled_tools() -> tuple[str, ...]:
    """The tools LOCALLLM_STORES names (all when it is unset)."""
    value = os.environ.get(STORES_ENV)
    if value is None:
        return TOOLS
    wanted = {t.strip().lower() for t in value.split(",")}
    return tuple(t for t in TOOLS if t in wanted)


def scan(tools: tuple[str, ...] | None = None) -> Scan:
    """Every model the stores hold (broken ones included), and a note per folder that was skipped.
    tools: which to read (default: LOCALLLM_STORES's, all when unset)."""
    tools = enabled_tools() if tools is None else tools
    out = Scan()
    scanners = {"ollama": (ollama.ollama_roots, ollama.scan_ollama),
                "lmstudio": (folders.lmstudio_roots, folders.scan_lmstudio),
                "llamacpp": (apps.llamacpp_roots, apps.scan_llamacpp),
                "gpt4all": (apps.gpt4all_roots, apps.scan_gpt4all), "jan": (apps.jan_roots, apps.scan_jan),
                "folder": (folders.folder_roots, folders.scan_folder)}
    for tool in tools:
        roots, scan_one = scanners[tool]
        for root in roots():
            if tool == "folder" and not os.path.lexists(root):
                out.notes.append(f"folder: {root} (in the settings' model_folders) does not exist")
                continue
            try:
                scan_one(root, out)
            except OSError as exc:  # a store that vanished mid-scan: the others are still listed
                out.notes.append(f"{tool}: skipped {root}: {exc.strerror or exc}")
    return out


def is_store_ref(text: str) -> bool:
    return text.startswith(PREFIXES)


def resolve(ref: str) -> Path:
    """The GGUF (first part) an `ollama:NAME[:TAG]` or `lmstudio:PUBLISHER/MODEL[/FILE]` ref names;
    StoreError naming what the store holds when it names nothing usable."""
    return resolve_found(ref).parts[0]


def resolve_found(ref: str) -> Found:
    """The store's model a ref names, with its Source (an Ollama model's params layer among it); StoreError
    as resolve() says."""
    tool, _, name = ref.partition(":")
    found = scan((tool,))
    if tool == "ollama":
        want = tuple(p.lower() for p in ollama.parse_ollama_name(name))
        hits = [f for f in found.found
                if tuple(p.lower() for p in ollama.parse_ollama_name(f.source.name)) == want]
    else:
        hits = folders.lmstudio_hits(found.found, name.strip("/").lower())
    usable = [f for f in hits if f.status == "ok"]
    if len(usable) == 1:
        return usable[0]
    if len(usable) > 1:
        names = ", ".join(f"{tool}:{f.source.name}" for f in usable)
        raise StoreError(f"{ref} names {len(usable)} models; say which: {names}.")
    if hits:
        raise StoreError(f"Cannot use {ref}: {hits[0].detail}.")
    tool_name = "Ollama" if tool == "ollama" else "LM Studio"
    roots = ", ".join(str(r) for r in (ollama.ollama_roots() if tool == "ollama" else folders.lmstudio_roots()))
    have = sorted(f"{tool}:{f.source.name}" for f in found.found if f.status == "ok")
    listed = f"It has: {', '.join(have[:20])}{' …' if len(have) > 20 else ''}." if have else \
        f"No {tool_name} models were found in {roots}."
    notes = f" ({'; '.join(found.notes)})" if found.notes else ""
    raise StoreError(f"No {tool_name} model {name!r}. {listed}{notes}")
