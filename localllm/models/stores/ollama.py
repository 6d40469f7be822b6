"""Ollama's store, as its source lays it out (manifest/paths.go, types/model/name.go):
manifests/<host>/<namespace>/<model>/<tag> are Docker-style JSON manifests; the
application/vnd.ollama.image.model layer is the GGUF at blobs/sha256-<hex>; names default to
registry.ollama.ai / library / latest."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from localllm.models.stores.base import (
    Found,
    Scan,
    Source,
    _entries,
    _home,
    _is_dir,
    _is_file,
    _small_json,
    _small_text,
    _unique,
)

OLLAMA_HOST, OLLAMA_NAMESPACE, OLLAMA_TAG = "registry.ollama.ai", "library", "latest"
_MEDIA = "application/vnd.ollama.image."
MODEL_LAYER, PROJECTOR_LAYER, PARAMS_LAYER = _MEDIA + "model", _MEDIA + "projector", _MEDIA + "params"
SYSTEM_LAYER = _MEDIA + "system"  # the Modelfile's SYSTEM prompt, as plain text
TENSOR_LAYER = _MEDIA + "tensor"  # safetensors/MLX tensors (Ollama's newer engines): not runnable here
ADAPTER_LAYER = _MEDIA + "adapter"  # a LoRA Ollama applies on top: without it, another model
_DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")


def ollama_roots() -> list[Path]:
    env = os.environ.get("OLLAMA_MODELS")
    roots = [Path(env).expanduser()] if env else [_home() / ".ollama" / "models"]
    if sys.platform.startswith("linux"):
        roots.append(Path("/usr/share/ollama/.ollama/models"))  # the systemd service's user
    return _unique(roots)


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


def _blob(root: Path, digest: object) -> tuple[Path | None, str]:
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
    projector, params, system = "", "", ""
    for layer in layers:
        path, _ = _blob(root, layer.get("digest"))
        if path is None:
            continue
        if layer.get("mediaType") == PROJECTOR_LAYER and path.exists():
            projector = str(path)
        elif layer.get("mediaType") == PARAMS_LAYER:
            value = _small_json(path)
            params = json.dumps(value, sort_keys=True, separators=(",", ":")) if isinstance(value, dict) else ""
        elif layer.get("mediaType") == SYSTEM_LAYER:
            system = _small_text(path)
    return Found(Source("ollama", display, str(blob), projector, params, f"sha256:{digest}", system), (blob,))
