"""How good a (model, format, quant) pick is expected to be, as one number for ranking: the model's size
on a log scale, less what its quantization costs (published figures, cited beside each)."""

from __future__ import annotations

import math

from localllm.models.catalog import ModelSpec

# Perplexity added on Llama-3-8B (llama.cpp's quantize table; F16 ppl ~6.23).
GGUF_PPL = {"Q2_K": 3.5199, "Q3_K_S": 1.6321, "Q3_K_M": 0.6569, "Q3_K_L": 0.5562, "Q4_0": 0.4685,
            "Q4_1": 0.4511, "Q4_K_S": 0.2689, "Q4_K_M": 0.1754, "Q5_0": 0.1316, "Q5_1": 0.1062,
            "Q5_K_S": 0.1049, "Q5_K_M": 0.0569, "Q6_K": 0.0217, "Q8_0": 0.0026, "F16": 0.0}
REF_PPL = 6.23
# Open LLM Leaderboard average lost against fp16 (SEEDS.md 002: Llama-2-7b / 13b).
TRANSFORMERS_LOSS = {"bnb-nf4": (0.017, "-1.7% (7B) / -3.0% (13B) Open LLM avg vs fp16 (seed 002)"),
                     "gptq": (0.020, "-2.0% (7B) / -1.9% (13B) Open LLM avg vs fp16 (seed 002)"),
                     "bnb-int8": (0.002, "near fp16: LLM.int8 keeps outlier features in fp16"),
                     "fp16": (0.0, "reference quality")}

def quality_params(spec: ModelSpec) -> float:
    """The parameters the quality index counts. A mixture of experts counts as the geometric mean of its
    weights and those one token reads (a rule of thumb: OLMoE-1B-7B, 6.9B of which 1.3B per token, ranks
    with the 3B dense models, not the 7B ones)."""
    if not spec.experts or not spec.experts_active:
        return float(spec.params)
    active = spec.active_layer_params * spec.layers + spec.embedding_params + spec.output_params
    return math.sqrt(spec.params * active)


def quality_index(spec: ModelSpec, fmt: str, quant: str) -> tuple[float, str]:
    """20 x log10(parameters / 1e7), less the quantization's cost, which small models feel more."""
    params = quality_params(spec)
    base = 20 * math.log10(params / 1e7)
    scale = min(3.0, (8e9 / params) ** 0.25)
    if fmt == "gguf":
        ppl = GGUF_PPL.get(quant, 0.45)
        loss, hint = 0.5 * ppl / REF_PPL, f"+{ppl:.3g} ppl on Llama-3-8B (llama.cpp)"
    else:
        loss, hint = TRANSFORMERS_LOSS.get(fmt, (0.0, "reference quality"))
    return base * (1 - min(0.9, loss * scale)), hint
