"""The one table of GGUF quantization types: names and file-type numbers come from gguf's own
`LlamaFileType` (so every type llama.cpp writes has its name: IQ4_XS is "IQ4_XS", not "type 30"),
and localllm's own facts sit beside them: whole-file bits per weight, and which types the quantizer
offers and lists first. Every screen and command reads it from here."""

from __future__ import annotations

import functools

# Whole-file bits per weight of llama.cpp's quants, measured on Llama-3-8B (llama-quantize's own table).
BITS_PER_WEIGHT = {"Q2_K": 3.16, "Q3_K_S": 3.65, "Q3_K_M": 4.00, "Q3_K_L": 4.30, "Q4_0": 4.5, "Q4_1": 5.0,
                   "Q4_K_S": 4.67, "Q4_K_M": 4.89, "Q5_0": 5.5, "Q5_1": 6.0, "Q5_K_S": 5.57, "Q5_K_M": 5.70,
                   "Q6_K": 6.56, "Q8_0": 8.50, "F16": 16.0, "BF16": 16.0, "F32": 32.0,
                   # the i-quants, from the sizes of bartowski's Meta-Llama-3-8B-Instruct-GGUF files (made
                   # with an importance matrix, which localllm's quantizer does not offer: download them)
                   "IQ1_M": 2.15, "IQ2_XXS": 2.39, "IQ2_XS": 2.59, "IQ2_S": 2.75, "IQ2_M": 2.94,
                   "IQ3_XXS": 3.26, "IQ3_XS": 3.51, "IQ3_M": 3.77, "IQ4_XS": 4.43, "IQ4_NL": 4.66}
# What localllm's quantizer offers (llama_model_quantize needs no importance matrix for these), the
# most asked-for first: the quantize screen lists them in this order.
OFFERED = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "Q3_K_M", "Q2_K", "F16",
           "Q4_1", "Q5_0", "Q5_1", "Q3_K_S", "Q3_K_L", "Q4_K_S", "Q5_K_S", "BF16")
COMMON = OFFERED[:8]  # shown first in the quantize screen
FLOAT_TYPES = ("F32", "F16", "BF16")


@functools.cache
def file_types() -> dict[int, str]:
    """general.file_type number -> name, for every type gguf knows (imported on first use: ~0.3 s)."""
    from gguf.constants import LlamaFileType

    names = {}
    for member in LlamaFileType:
        if member.name == "GUESSED":
            continue
        names[int(member.value)] = member.name.removeprefix("MOSTLY_").removeprefix("ALL_")
    return names


def name_of(file_type: int | None, fallback: str = "unknown") -> str:
    if file_type is None:
        return fallback
    return file_types().get(int(file_type), fallback if fallback != "unknown" else f"type {file_type}")


@functools.cache
def quantizer_types() -> dict[str, int]:
    """The types the quantizer offers, name -> llama_ftype number, in OFFERED's order."""
    numbers = {name: number for number, name in file_types().items()}
    return {name: numbers[name] for name in OFFERED if name in numbers}
