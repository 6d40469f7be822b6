"""Backend names -> implementations, imported only when one is chosen (rule 2)."""

from __future__ import annotations

import importlib
import importlib.util  # not loaded by `import importlib` alone

from localllm.backends.base import Backend
from localllm.config import BACKEND_NAMES
from localllm.config.options import SCRIPTED_BACKEND, scripted_enabled
from localllm.errors import BackendNotInstalled

# name: (module, class, the import that must succeed, install command)
BACKENDS: dict[str, tuple[str, str, str, str]] = {
    "llama_cpp": ("localllm.backends.llama_cpp", "LlamaCppBackend", "llama_cpp",
                  "pip install llama-cpp-python"),
    "remote": ("localllm.backends.remote", "RemoteBackend", "openai", "pip install openai"),
    "transformers": ("localllm.backends.transformers_backend", "TransformersBackend", "transformers",
                     "pip install 'localllm[transformers]'  (torch, transformers, accelerate, bitsandbytes)"),
}

assert tuple(BACKENDS) == BACKEND_NAMES  # settings offer config's names; keep the two in step


def is_installed(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[name][2]) is not None


def create(name: str) -> Backend:
    if name == SCRIPTED_BACKEND and scripted_enabled():  # tests only: not in BACKENDS, offered nowhere
        from localllm.backends.scripted import ScriptedBackend

        return ScriptedBackend()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    module, cls, needs, install = BACKENDS[name]
    if not is_installed(name):
        raise BackendNotInstalled(name, install)
    backend: Backend = getattr(importlib.import_module(module), cls)()
    return backend
