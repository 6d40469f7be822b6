"""Run options and their defaults: how a model is loaded and sampled. settings.toml, the CLI's
flags and the TUI read their defaults from here."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from localllm.config import defaults

# the choices are re-exported: code that reads options reads them here
from localllm.config.defaults import AUTO_LAYERS as AUTO_LAYERS
from localllm.config.defaults import BACKEND_NAMES as BACKEND_NAMES
from localllm.config.defaults import EXTRA_BUFFERS as EXTRA_BUFFERS
from localllm.config.defaults import KV_TYPES as KV_TYPES


def default_threads() -> int:
    """Physical cores: llama.cpp decodes fastest with one thread per physical core."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


# Tests only: the scripted backend (localllm.backends.scripted) streams a JSON script's fixed tokens at set
# delays, with no model. Not in BACKEND_NAMES (settings never offer it): a model named *.scripted.json
# selects it, and only while SCRIPTED_ENV is "1" (the test sets it; the worker inherits it). Without it,
# such a file is a GGUF path like any other, refused as one.
SCRIPTED_BACKEND = "scripted"
SCRIPTED_SUFFIX = ".scripted.json"
SCRIPTED_ENV = "LOCALLLM_TEST_SCRIPTED_BACKEND"


def scripted_enabled() -> bool:
    return os.environ.get(SCRIPTED_ENV) == "1"


# LoadOptions' old field names (before the knobs took one name each), read by LoadOptions.from_dict
OLD_FIELDS = {"n_ctx": "context", "n_threads": "threads", "n_gpu_layers": "gpu_layers", "extra_bufts": "extra_buffers"}


@dataclass
class LoadOptions:
    """How a model is loaded; passed unchanged to the worker and the backend."""

    # the load knobs carry the names of the settings keys and CLI flags (docs/ARCHITECTURE.md, "One name
    # per knob"); llama-cpp-python's n_ctx, n_threads, n_gpu_layers are spelled out where it is called
    context: int = defaults.CONTEXT
    threads: int = 0  # 0: default_threads()
    gpu_layers: int = AUTO_LAYERS  # AUTO_LAYERS: the load plan decides; -1: all; 0: none
    seed: int = 0
    # llama.cpp's extra buffer types (AMX / repack kernels): auto | on | off (see localllm.runtime.binding)
    extra_buffers: str = "auto"
    kv_type: str = defaults.KV_TYPE  # llama.cpp's KV cache: f16 | q8_0 | q4_0 (flash attention on for the quantized)
    force: bool = False  # load even when the plan says it does not fit
    # remote backend: the model id on the server, the env variable holding its API key
    remote_model: str = ""
    api_key_env: str = ""
    read_timeout_s: float = 60.0
    # transformers backend: dtype, bitsandbytes quantization at load, where the weights go
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    quantization: str = "none"  # none | int8 | nf4 | fp4
    double_quant: bool = True  # bnb 4-bit: quantize the quantization constants too
    compute_dtype: str = "auto"  # bnb 4-bit compute dtype
    int8_threshold: float = 6.0  # LLM.int8 outlier threshold
    device_map: str = "auto"  # auto | cpu | cuda
    trust_remote_code: bool = False  # never on unless the user asks

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadOptions:
        """LoadOptions from vars(): the worker's side of the protocol; the old field names are read too."""
        return cls(**{OLD_FIELDS.get(k, k): v for k, v in data.items()})

    def resolved(self) -> LoadOptions:
        return dataclasses.replace(self, threads=self.threads or default_threads())


@dataclass
class SamplingParams:
    """Sampling settings for one reply."""

    temperature: float = defaults.TEMPERATURE
    top_p: float = defaults.TOP_P
    top_k: int = defaults.TOP_K
    min_p: float = defaults.MIN_P
    repeat_penalty: float = defaults.REPEAT_PENALTY
    max_tokens: int = defaults.MAX_TOKENS
    seed: int | None = None
    ignore_eos: bool = False  # fixed-length runs for benchmarks
    # where a model's own defaults give them (localllm.models.sampling_defaults): strings that end a
    # reply (not shown), and token ids that end it besides the model's EOS
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
