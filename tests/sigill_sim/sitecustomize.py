"""Test-only simulation of llama.cpp's AMX fault (llama.cpp #20824), for every Python process the tests
start: tests/conftest.py puts this folder on PYTHONPATH, so model workers, the `localllm` command and
`python -m llama_cpp.server` all read it at start-up. With LOCALLLM_TEST_SIGILL set, a process that
loaded a model with llama.cpp's extra buffer types on dies of SIGILL at its first llama_decode, as the
AMX kernel does on some Intel Xeons. Without the variable it does nothing.

It patches llama-cpp-python's ctypes layer, not localllm: whatever starts llama.cpp with the extra
buffers on, a test helper included, dies the way it would on such a host."""

from __future__ import annotations

import os
import sys

ENV = "LOCALLLM_TEST_SIGILL"  # tests/sigill.py names it for the tests


def _die() -> None:
    import resource
    import signal

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left behind
    os.kill(os.getpid(), signal.SIGILL)


def _patch(module) -> None:
    """llama_cpp.llama_cpp: remember a load with use_extra_bufts, die at the next decode."""
    load, decode = module.llama_model_load_from_file, module.llama_decode
    state = {"extra_bufts": False}

    def load_from_file(path_model, params, /):
        if getattr(params, "use_extra_bufts", False):
            state["extra_bufts"] = True
        return load(path_model, params)

    def llama_decode(ctx, batch, /):
        if state["extra_bufts"]:
            _die()
        return decode(ctx, batch)

    module.llama_model_load_from_file = load_from_file
    module.llama_decode = llama_decode


def _install() -> None:
    import importlib.abc
    import importlib.machinery

    class PatchAfterLoad(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "llama_cpp.llama_cpp":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return None
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _patch(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, PatchAfterLoad())


def _chain() -> None:
    """Run the sitecustomize this one shadows, if the interpreter has one."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if os.environ.get(ENV):
    _install()
_chain()
