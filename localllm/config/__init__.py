"""Paths (platformdirs, LOCALLLM_HOME), run options with their defaults, and the user's settings.
With errors.py the bottom layer: it imports nothing else of localllm's. The package exposes paths and
options by name; settings is imported as localllm.config.settings, and state (how every state file is
written: atomically, updated under a lock, a corrupt one set aside) as localllm.config.state."""

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

__all__ = [
    "AUTO_LAYERS", "BACKEND_NAMES", "EXTRA_BUFFERS", "KV_TYPES", "PACKAGE_DATA", "LoadOptions", "SamplingParams",
    "config_dir", "data_dir", "default_threads", "home", "logs_dir", "prune_worker_logs", "read_tail",
]
