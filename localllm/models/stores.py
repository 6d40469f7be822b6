"""Models other tools keep on this disk, found read-only: Ollama's store, LM Studio's folders and the
folders named in the settings (`model_folders`). Nothing here writes, links or moves anything inside
them; localllm's own record of what it read (`file_facts.json`) lives in localllm's home.

    ollama    $OLLAMA_MODELS or ~/.ollama/models (and /usr/share/ollama/.ollama/models, the Linux
              service's): manifests/<host>/<namespace>/<model>/<tag> are Docker-style JSON manifests;
              the application/vnd.ollama.image.model layer is the GGUF at blobs/sha256-<hex>
    lmstudio  ~/.lmstudio/models/<publisher>/<model>/*.gguf, the older ~/.cache/lm-studio/models and
              the downloadsFolder its settings.json names
    folder    every *.gguf under a folder the user added

A source that cannot be read becomes a note; the other sources are still listed. LOCALLLM_STORES
names the tools to read (comma-separated, e.g. "ollama"; "none": none; unset: all): the test suite
sets it so a developer's own stores stay out of the library the tests see.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from localllm import config
from localllm.config import state
from localllm.errors import LocalLLMError
from localllm.hub.repos import SPLIT_RE, split_base

log = logging.getLogger(__name__)

TOOLS = ("ollama", "lmstudio", "folder")
PREFIXES = ("ollama:", "lmstudio:")  # the model refs (`chat -m ollama:smollm2:135m`)

OLLAMA_HOST, OLLAMA_NAMESPACE, OLLAMA_TAG = "registry.ollama.ai", "library", "latest"
_MEDIA = "application/vnd.ollama.image."
MODEL_LAYER, PROJECTOR_LAYER, PARAMS_LAYER = _MEDIA + "model", _MEDIA + "projector", _MEDIA + "params"
TENSOR_LAYER = _MEDIA + "tensor"  # safetensors/MLX tensors (Ollama's newer engines): not runnable here
ADAPTER_LAYER = _MEDIA + "adapter"  # a LoRA Ollama applies on top: without it, another model
_DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
_MAX_SMALL = 1 << 20  # manifests, params and settings files larger than this are not what they claim
_FOLDER_DEPTH = 6


class StoreError(LocalLLMError):
    """A store ref (`ollama:NAME`, `lmstudio:PUB/MODEL`) names nothing usable; the message says what exists."""


@dataclass(frozen=True)
class Source:
    """One place a model file is known: the tool, that tool's name for it, and the file."""

    tool: str  # "ollama" | "lmstudio" | "folder" (and "embedded" | "hf-cache" | "path" from the library)
    name: str  # "smollm2:135m", "bartowski/Llama-3.2-1B-GGUF/Llama-3.2-1B-Q4_K_M.gguf", a path
    path: str
    projector: str = ""  # a vision projector beside it (Ollama's projector layer, LM Studio's mmproj file)
    params: str = ""  # Ollama's params layer, as compact JSON text
    digest: str = ""  # Ollama's blob digest: the sha256 of the whole file

    @property
    def ref(self) -> str:
        """What `-m` (and `localllm models rm`) takes for it."""
        if self.tool in ("ollama", "lmstudio"):
            return f"{self.tool}:{self.name}"
        return self.path if self.tool == "folder" else self.name  # library sources: their entry id

    def to_dict(self) -> dict:
        out: dict = {"tool": self.tool, "name": self.name, "path": self.path}
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


# --- where the stores are ---------------------------------------------------------------------------

def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def _unique(paths: list[Path]) -> list[Path]:
    out, seen = [], set()
    for p in paths:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def ollama_roots() -> list[Path]:
    env = os.environ.get("OLLAMA_MODELS")
    roots = [Path(env).expanduser()] if env else [_home() / ".ollama" / "models"]
    if sys.platform.startswith("linux"):
        roots.append(Path("/usr/share/ollama/.ollama/models"))  # the systemd service's user
    return _unique(roots)


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


def _small_json(path: Path):
    """A small JSON file's value; None when it is missing, unreadable, too large or not JSON."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_SMALL + 1)
        return json.loads(raw) if len(raw) <= _MAX_SMALL else None
    except (OSError, ValueError):
        return None


def _entries(folder: Path, scan: Scan, what: str) -> list[os.DirEntry]:
    """A folder's entries, sorted; [] with a note when it cannot be read (and silently when absent)."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        scan.notes.append(f"{what}: skipped {folder}: {exc.strerror or exc}")
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


# --- Ollama ---------------------------------------------------------------------------------------

def ollama_display(host: str, namespace: str, model: str, tag: str) -> str:
    """Ollama's DisplayShortest: model:tag, with the namespace (and host) only when not the default."""
    if host.lower() != OLLAMA_HOST:
        return f"{host}/{namespace}/{model}:{tag}"
    if namespace.lower() != OLLAMA_NAMESPACE:
        return f"{namespace}/{model}:{tag}"
    return f"{model}:{tag}"


def parse_ollama_name(text: str) -> tuple[str, str, str, str]:
    """(host, namespace, model, tag) as Ollama's ParseName reads it, with its defaults
    (registry.ollama.ai / library / latest): a tag follows the last ':' after the last '/'."""
    tag = ""
    if text.rfind(":") > text.rfind("/"):
        text, _, tag = text.rpartition(":")
    parts = text.split("/")
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else OLLAMA_NAMESPACE
    host = "/".join(parts[:-2]) if len(parts) >= 3 else OLLAMA_HOST
    host = host.split("://", 1)[-1]
    return host or OLLAMA_HOST, namespace or OLLAMA_NAMESPACE, model, tag or OLLAMA_TAG


def scan_ollama(root: Path, scan: Scan) -> None:
    manifests = root / "manifests"
    for host in _entries(manifests, scan, "ollama"):
        for ns in _entries(Path(host.path), scan, "ollama") if _is_dir(host) else ():
            for model in _entries(Path(ns.path), scan, "ollama") if _is_dir(ns) else ():
                for tag in _entries(Path(model.path), scan, "ollama") if _is_dir(model) else ():
                    if _is_file(tag):
                        scan.found.append(_ollama_model(root, (host.name, ns.name, model.name, tag.name),
                                                         Path(tag.path)))


def _blob(root: Path, digest) -> tuple[Path | None, str]:
    m = _DIGEST_RE.match(digest) if isinstance(digest, str) else None
    return (root / "blobs" / f"sha256-{m.group(1).lower()}", m.group(1).lower()) if m else (None, "")


def _ollama_model(root: Path, name: tuple[str, str, str, str], manifest: Path) -> Found:
    display = ollama_display(*name)

    def broken(why: str, status: str = "broken") -> Found:
        return Found(Source("ollama", display, str(manifest)), (), status, why)

    data = _small_json(manifest)
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        return broken(f"the manifest {manifest} is not valid JSON (or has no layers)")
    layers = [la for la in data["layers"] if isinstance(la, dict)]
    models = [la for la in layers if la.get("mediaType") == MODEL_LAYER]
    if not models:
        if any(la.get("mediaType") == TENSOR_LAYER for la in layers):
            return broken("a multi-file (safetensors/MLX) model: it runs in Ollama only", "unsupported")
        return broken("the manifest has no model layer")
    if any(la.get("mediaType") == ADAPTER_LAYER for la in layers):
        return broken("a model with a LoRA adapter layer, which localllm does not apply", "unsupported")
    if len(models) > 1:
        return broken(f"{len(models)} model layers: a multi-file model that runs in Ollama only", "unsupported")
    blob, digest = _blob(root, models[0].get("digest"))
    if blob is None:
        return broken(f"the model layer's digest {models[0].get('digest')!r} is not a sha256 digest")
    try:
        size = blob.stat().st_size
    except OSError:
        return broken(f"dangling blob: {blob} is missing (the manifest names it)")
    want = models[0].get("size")
    if isinstance(want, int) and want != size:
        return broken(f"the blob {blob} has {size} bytes, the manifest says {want}: an unfinished pull")
    projector, params = "", ""
    for layer in layers:
        path, _ = _blob(root, layer.get("digest"))
        if path is None:
            continue
        if layer.get("mediaType") == PROJECTOR_LAYER and path.exists():
            projector = str(path)
        elif layer.get("mediaType") == PARAMS_LAYER:
            value = _small_json(path)
            params = json.dumps(value, sort_keys=True, separators=(",", ":")) if isinstance(value, dict) else ""
    return Found(Source("ollama", display, str(blob), projector, params, f"sha256:{digest}"), (blob,))


# --- LM Studio and user folders -------------------------------------------------------------------

def _is_projector(name: str) -> bool:
    return name.lower().startswith("mmproj")


def _gguf_groups(files: list[os.DirEntry]) -> dict[str, list[Path]]:
    """Model GGUFs in one folder grouped by split base (model-00001-of-00003.gguf -> model.gguf)."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        if f.name.lower().endswith(".gguf") and not _is_projector(f.name) and _is_file(f):
            groups.setdefault(split_base(f.name), []).append(Path(f.path))
    return {k: sorted(v) for k, v in sorted(groups.items())}


def _folder_models(folder: Path, files: list[os.DirEntry], tool: str, prefix: str) -> list[Found]:
    projectors = [f.path for f in files if _is_projector(f.name) and f.name.lower().endswith(".gguf")]
    out = []
    for base, parts in _gguf_groups(files).items():
        name = f"{prefix}/{base}" if prefix else str(parts[0])
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


def scan_folder(root: Path, scan: Scan, depth: int = 0) -> None:
    entries = _entries(root, scan, "folder")
    scan.found += _folder_models(root, entries, "folder", "")
    if depth < _FOLDER_DEPTH:
        for entry in entries:
            if _is_dir(entry) and not entry.name.startswith("."):
                scan_folder(Path(entry.path), scan, depth + 1)


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
    scanners = {"ollama": (ollama_roots, scan_ollama), "lmstudio": (lmstudio_roots, scan_lmstudio),
                "folder": (folder_roots, scan_folder)}
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


# --- refs -----------------------------------------------------------------------------------------

def is_store_ref(text: str) -> bool:
    return text.startswith(PREFIXES)


def resolve(ref: str) -> Path:
    """The GGUF (first part) an `ollama:NAME[:TAG]` or `lmstudio:PUBLISHER/MODEL[/FILE]` ref names;
    StoreError naming what the store holds when it names nothing usable."""
    tool, _, name = ref.partition(":")
    found = scan((tool,))
    if tool == "ollama":
        want = tuple(p.lower() for p in parse_ollama_name(name))
        hits = [f for f in found.found
                if tuple(p.lower() for p in parse_ollama_name(f.source.name)) == want]
    else:
        hits = _lmstudio_hits(found.found, name.strip("/").lower())
    usable = [f for f in hits if f.status == "ok"]
    if len(usable) == 1:
        return usable[0].parts[0]
    if len(usable) > 1:
        names = ", ".join(f"{tool}:{f.source.name}" for f in usable)
        raise StoreError(f"{ref} names {len(usable)} models; say which: {names}.")
    if hits:
        raise StoreError(f"Cannot use {ref}: {hits[0].detail}.")
    tool_name = "Ollama" if tool == "ollama" else "LM Studio"
    roots = ", ".join(str(r) for r in (ollama_roots() if tool == "ollama" else lmstudio_roots()))
    have = sorted(f"{tool}:{f.source.name}" for f in found.found if f.status == "ok")
    listed = f"It has: {', '.join(have[:20])}{' …' if len(have) > 20 else ''}." if have else \
        f"No {tool_name} models were found in {roots}."
    notes = f" ({'; '.join(found.notes)})" if found.notes else ""
    raise StoreError(f"No {tool_name} model {name!r}. {listed}{notes}")


def _lmstudio_hits(found: list[Found], key: str) -> list[Found]:
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


# --- what a file is: identity, quant, arch, context; cached by inode, mtime and size ----------------

HEAD_BYTES = 1 << 20  # the header and, for most vocabularies, the tensor table; plus the last MiB
FACTS_FILE = "file_facts.json"
_MAX_FACTS = 20_000


@dataclass(frozen=True)
class Facts:
    identity: str  # "<size>-<sha256 of the first and last MiB>": one file, wherever it is
    quant: str | None
    damage: str  # why the header is unusable; "" when it is fine
    arch: str
    context: int


_memo: dict[str, list] = {}
_dirty: dict[str, list] = {}
_loaded = False
_lock = threading.Lock()  # the TUI lists from worker threads


def facts_path() -> Path:
    return config.home() / FACTS_FILE


def _key(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


def facts(path: str | os.PathLike) -> Facts | None:
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
            _memo.update({k: v for k, v in stored.items() if isinstance(v, list) and len(v) == 7})
        _loaded = True
    key, row = _key(st), _memo.get(_key(st))
    if not (row and row[0] == st.st_size and row[1] == st.st_mtime_ns):
        row = [st.st_size, st.st_mtime_ns, *_compute(path, st.st_size)]
        _memo[key] = _dirty[key] = row
    return Facts(str(row[2]), row[3] or None, str(row[4]), str(row[5]), int(row[6] or 0))


def _compute(path: Path, size: int) -> list:
    from localllm.errors import ModelFileError
    from localllm.models.gguf_check import inspect_gguf

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            digest.update(fh.read(HEAD_BYTES))
            if size > 2 * HEAD_BYTES:
                fh.seek(size - HEAD_BYTES)
            digest.update(fh.read(HEAD_BYTES))
    except OSError as exc:
        return [f"{size}-unreadable", None, f"cannot read it ({exc.strerror or exc})", "", 0]
    identity = f"{size}-{digest.hexdigest()}"
    try:
        info = inspect_gguf(path)
    except ModelFileError as exc:
        return [identity, None, exc.reason, "", 0]
    return [identity, info.quant if info.quant != "unknown" else None, "", info.architecture,
            int(info.context_length or 0)]


def save_facts() -> None:
    """Write the facts computed since the last save (one locked update per listing)."""
    with _lock:
        if not _dirty:
            return
        new = dict(_dirty)
        _dirty.clear()

    def merge(data: dict) -> dict:
        files = data.get("files") if isinstance(data.get("files"), dict) else {}
        files = {**files, **new}
        if len(files) > _MAX_FACTS:  # files come and go: keep the newest computed
            files = dict(list(files.items())[-_MAX_FACTS:])
        return {"version": 1, "files": files}

    try:
        state.update(facts_path(), merge)
    except OSError as exc:  # a read-only home: the facts are computed again next time
        log.info("cannot save %s: %s", facts_path(), exc.strerror or exc)
