"""Which catalog picks the user already has: a library entry is that (model, quant) only when every
test agrees, since a wrong "on disk" (a fine-tune, a base model, another size) is worse than a missed one:

    quant      the header's file type is the pick's quant
    shape      the header's block_count and embedding_length are the model's layers and hidden size, and
               its tensor table holds the model's parameter count (within PARAMS_SLACK)
    name       a source's name for it (Ollama's model:tag, a file or folder name) is the model's id, name
               or file name, followed by nothing but "instruct"/"it"/"chat", "gguf", "latest" and the quant

Reads nothing itself: the header facts come from stores.facts (cached by inode, mtime and size).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from localllm.hub.repos import split_base
from localllm.models import stores
from localllm.models.catalog import ModelSpec
from localllm.models.library import LibraryEntry, list_models
from localllm.models.stores import Source

PARAMS_SLACK = 0.08  # the GGUF's tensor count against the catalog's parameter count
_FILLER = ("instruct", "gguf", "latest", "chat", "it")  # longest first: "it" must not eat "instruct"
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class OnDisk:
    """A catalog (model, quant) found on this disk: the file and every place it is known."""

    model: str  # the catalog id
    quant: str
    path: str
    sources: tuple[Source, ...]

    @property
    def ref(self) -> str:
        """What `chat -m` takes for it: its first source's ref (`ollama:smollm2:135m`, a library id, a path)."""
        return self.sources[0].ref if self.sources else self.path

    @property
    def label(self) -> str:
        """"ollama: llama3.2:3b" (the other tools' names first; the embedded model says so elsewhere)."""
        shown = [s for s in self.sources if s.tool != "embedded"] or list(self.sources)
        return "; ".join(f"{s.tool}: {s.name}" for s in shown[:2]) + (" …" if len(shown) > 2 else "")


def _norm(text: str) -> str:
    return _NON_ALNUM.sub("", text.lower())


def _keys(spec: ModelSpec) -> set[str]:
    """What the model's files and tags begin with: llama323b, llama323binstruct, googlegemma31bit."""
    names = [spec.id, spec.name, spec.gguf_file.split("{quant}")[0], spec.gguf_repo.rsplit("/", 1)[-1],
             spec.fp16_repo.rsplit("/", 1)[-1]]
    return {k for k in (_norm(n) for n in names) if len(k) >= 4}


def _names(source: Source, path: str) -> set[str]:
    """The names a source gives the file: Ollama's model:tag; a file's name (its split base, without
    .gguf) and its folder's (Jan's <id>/model.gguf, LM Studio's <publisher>/<model>/)."""
    out = set()
    if source.tool == "ollama":
        out.add(source.name.rsplit("/", 1)[-1])
    for p in {source.path, path}:
        file = Path(p)
        out.add(split_base(file.name).removesuffix(".gguf").removesuffix(".GGUF"))
        out.add(file.parent.name)
    return {_norm(n) for n in out if n}


def _named(spec: ModelSpec, quant: str, names: Iterable[str]) -> bool:
    q = _norm(quant)
    for name in names:
        for key in _keys(spec):
            if not name.startswith(key):
                continue
            rest = name[len(key):]
            while rest:
                word = next((w for w in (*_FILLER, q) if w and rest.startswith(w)), None)
                if word is None:
                    break
                rest = rest[len(word):]
            if not rest:
                return True
    return False


def _shaped(spec: ModelSpec, facts: stores.Facts) -> bool:
    if not (facts.layers and facts.hidden and facts.params):
        return False
    return (facts.layers == spec.layers and facts.hidden == spec.hidden
            and abs(facts.params - spec.params) <= PARAMS_SLACK * spec.params)


def match(specs: Sequence[ModelSpec], entries: Sequence[LibraryEntry]) -> dict[tuple[str, str], OnDisk]:
    """(catalog id, quant) -> the entry that is that model at that quant, for every one found."""
    out: dict[tuple[str, str], OnDisk] = {}
    for entry in entries:
        if entry.format != "gguf" or not entry.usable or not entry.path:
            continue
        facts = stores.facts(entry.path)
        if facts is None or facts.damage or not facts.quant:
            continue
        names = set().union(*(_names(s, entry.path) for s in entry.sources)) if entry.sources else set()
        for spec in specs:
            key = (spec.id, facts.quant.upper())
            if key not in out and _shaped(spec, facts) and _named(spec, facts.quant, names):
                out[key] = OnDisk(spec.id, facts.quant.upper(), entry.path, entry.sources)
    return out


def catalog_model(specs: Sequence[ModelSpec], source: Source) -> ModelSpec | None:
    """The catalog model a store's file is (`ollama:smollm2:135m` is SmolLM2-135M-Instruct), by the same
    test as match(): its shape and the names its tool gives it; None when it cannot tell."""
    facts = stores.facts(source.path)
    if facts is None or facts.damage or not facts.quant:
        return None
    names = _names(source, source.path)
    return next((s for s in specs if _shaped(s, facts) and _named(s, facts.quant, names)), None)


def find_on_disk(specs: Sequence[ModelSpec], notes: list[str] | None = None) -> dict[tuple[str, str], OnDisk]:
    """The catalog picks the library holds (every source listed once; cheap with a warm identity cache)."""
    return match(specs, list_models(notes=notes))
