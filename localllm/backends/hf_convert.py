"""A full-precision transformers checkpoint from a GGUF (transformers dequantizes it), so a user
who has only a GGUF can still try bitsandbytes and GPTQ."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from localllm.errors import ModelLoadError


def gguf_to_checkpoint(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write a normal safetensors checkpoint; built beside the target and renamed into place."""
    src, out = Path(gguf_path).resolve(), Path(out_dir)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"transformers could not read {src}: {exc}") from None
    # loaded from GGUF, the model still says it is quantized; it is plain fp32 now
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(partial, safe_serialization=True)
        tok.save_pretrained(partial)
    except BaseException:  # a full fp32 copy: never left half-written (a kill is the caller's to clean)
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return out
