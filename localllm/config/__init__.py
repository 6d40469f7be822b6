"""Paths (platformdirs, LOCALLLM_HOME), run options with their defaults, and the user's settings.
With errors.py the bottom layer: it imports nothing else of localllm's. The package exposes paths and
options by name; settings is imported as localllm.config.settings, and state (how every state file is
written: atomically, updated under a lock, a corrupt one set aside) as localllm.config.state.

The names below are imported on first use (PEP 562), so that a command that reads only
localllm.config.defaults (the CLI's parser, for `localllm --help`) does not pay for dataclasses,
platformdirs and the log helpers at start-up."""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing's own costs ~3 ms of start-up; mypy reads any TYPE_CHECKING as true
if TYPE_CHECKING:
    from localllm.config.logs import prune_worker_logs, read_tail
    from localllm.config.options import (
        AUTO_LAYERS,
        BACKEND_NAMES,
        EXTRA_BUFFERS,
        KV_TYPES,
        LoadOptions,
        SamplingParams,
        default_threads,
    )
    from localllm.config.paths import PACKAGE_DATA, config_dir, data_dir, home, logs_dir

_WHERE = {
    "prune_worker_logs": "logs", "read_tail": "logs",
    "AUTO_LAYERS": "options", "BACKEND_NAMES": "options", "EXTRA_BUFFERS": "options", "KV_TYPES": "options",
    "LoadOptions": "options", "SamplingParams": "options", "default_threads": "options",
    "PACKAGE_DATA": "paths", "config_dir": "paths", "data_dir": "paths", "home": "paths", "logs_dir": "paths",
}

__all__ = [  # spelled out for mypy: the names it reads as exported
    "AUTO_LAYERS", "BACKEND_NAMES", "EXTRA_BUFFERS", "KV_TYPES", "PACKAGE_DATA", "LoadOptions", "SamplingParams",
    "config_dir", "data_dir", "default_threads", "home", "logs_dir", "prune_worker_logs", "read_tail",
]


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:  # a submodule (config.settings) is found by the import system, not here
        raise AttributeError(f"module 'localllm.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"localllm.config.{module}"), name)
    globals()[name] = value  # later reads skip __getattr__
    return value
