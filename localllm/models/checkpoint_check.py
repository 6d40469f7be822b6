"""Validate a transformers checkpoint folder before a worker loads it: config.json readable,
weights present (safetensors preferred: pickle .bin files can run code when loaded)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localllm.errors import ModelFileError


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    architecture: str
    model_type: str
    quant: str  # "none", "gptq-4bit-g128", "bnb-nf4", ...
    weight_format: str  # "safetensors" | "pickle"
    size_bytes: int
    max_context: int | None


def quant_label(config: dict[str, Any]) -> str:
    """How a config.json says its weights are quantized: none, gptq-4bit-g128, bnb-nf4 ..."""
    q = config.get("quantization_config") or {}
    method = q.get("quant_method")
    if not method:
        return "none"
    if method == "gptq":
        return f"gptq-{q.get('bits', '?')}bit-g{q.get('group_size', '?')}"
    if method == "bitsandbytes":
        return "bnb-nf4" if q.get("load_in_4bit") else "bnb-int8"
    return str(method)


def inspect_checkpoint(path: str | Path, allow_pickle: bool = False) -> CheckpointInfo:
    p = Path(path).expanduser()
    shown = str(p)
    if not p.exists():
        raise ModelFileError(shown, "the folder does not exist", "Check the path.")
    if not p.is_dir():
        raise ModelFileError(shown, "a transformers checkpoint is a folder with config.json and weights",
                             "For a .gguf file use the llama.cpp backend.")
    config_path = p / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise ModelFileError(shown, "it has no config.json", "Download the whole repo, not single files.") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(shown, f"config.json is unreadable ({exc})", "Download it again.") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelFileError(shown, "config.json has no model_type", "This is not a transformers model.")
    safetensors = sorted(p.glob("*.safetensors"))
    pickles = sorted(p.glob("*.bin"))
    empty = [f.name for f in safetensors if f.stat().st_size == 0]
    if empty:
        raise ModelFileError(shown, f"weight file {empty[0]} is empty", "Download it again.")
    if safetensors:
        fmt, files = "safetensors", safetensors
    elif pickles:
        if not allow_pickle:
            raise ModelFileError(shown, "its weights are pickle .bin files, which can run code when loaded",
                                 "Prefer a safetensors copy of the model, or allow pickle explicitly.")
        fmt, files = "pickle", pickles
    else:
        raise ModelFileError(shown, "it holds no weight files (*.safetensors)", "Download the weights too.")
    archs = config.get("architectures") or [config["model_type"]]
    return CheckpointInfo(
        path=str(p.resolve()), architecture=str(archs[0]), model_type=str(config["model_type"]),
        quant=quant_label(config), weight_format=fmt, size_bytes=sum(f.stat().st_size for f in files),
        max_context=config.get("max_position_embeddings"),
    )
