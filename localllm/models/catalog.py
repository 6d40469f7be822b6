"""Model records: the curated catalog (data/catalog.toml), a Hub config.json, or a local GGUF header."""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localllm.config import PACKAGE_DATA
from localllm.errors import LocalLLMError

if TYPE_CHECKING:
    from localllm.hub.repos import HubConfig

CATALOG_PATH = PACKAGE_DATA / "catalog.toml"
# llama.cpp's fixed sliding-window layouts (every Nth layer global), not stored in GGUF metadata.
GGUF_SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4}


class CatalogError(LocalLLMError, ValueError):
    """A model description is missing, incomplete or unknown."""


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    params: int
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_context: int
    family: str = ""
    tied_embeddings: bool = False
    sliding_window: int = 0  # 0: every layer sees the whole context
    sliding_pattern: int = 0  # N: every Nth layer is global, the rest slide; 0 with a window: all slide
    experts: int = 0  # mixture of experts: experts per layer, and how many each token uses
    experts_active: int = 0
    gguf_repo: str = ""
    gguf_file: str = ""
    gguf_quants: tuple[str, ...] = ()
    gptq_repo: str = ""
    fp16_repo: str = ""
    gated: bool = False
    embedded: str = ""  # the quant localllm ships, if any
    source: str = "catalog"  # "catalog" | "config.json" | "gguf"
    gguf_path: str = ""  # from_gguf: the file whose tensor table gives exact weight bytes
    gguf_quant: str = ""
    checkpoint_bits: int = 16  # the full-precision checkpoint's dtype on disk (fp16/bf16 on the Hub)
    # the model card's recommended sampling (temperature, top_p, ..., stop), a [model.sampling] table;
    # localllm.models.sampling_defaults ranks it below the model's own metadata
    sampling: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # a system prompt this model does better with than the app's (measured: benchmarks/paris_rate.py --questions)
    system_prompt: str = ""

    # -- derived sizes --------------------------------------------------------------------------
    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def output_params(self) -> int:
        """The output head's own weights; 0 when it reuses the embedding matrix."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def layer_params(self) -> float:
        """Weights of one transformer block (all experts), from the total so norms and biases count."""
        return (self.params - self.embedding_params - self.output_params) / self.layers

    @property
    def active_layer_params(self) -> float:
        """Weights one token reads per block: for a mixture of experts only the chosen experts."""
        if not self.experts or not self.experts_active:
            return self.layer_params
        ffn_all = 3 * self.hidden * self.ffn * self.experts
        return self.layer_params - ffn_all * (1 - self.experts_active / self.experts)

    @property
    def sliding_layers(self) -> int:
        if not self.sliding_window:
            return 0
        if self.sliding_pattern <= 1:
            return self.layers
        return self.layers - self.layers // self.sliding_pattern  # llama.cpp: il % N < N-1 slides

    @property
    def billions(self) -> float:
        return self.params / 1e9

    def gguf_filename(self, quant: str) -> str:
        return self.gguf_file.format(quant=quant) if self.gguf_file else ""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["gguf_quants"] = list(self.gguf_quants)
        return data

    # -- other sources ----------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict[str, Any], repo_id: str = "") -> ModelSpec:
        """A transformers config.json (as a dict). Raises CatalogError naming every missing field."""
        return _from_config(config, repo_id)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike[str]) -> ModelSpec:
        """A local GGUF file's header; its tensor table later gives the exact weight bytes."""
        return _from_gguf(path)


def _spec_from_toml(entry: dict[str, Any]) -> ModelSpec:
    known = {f.name for f in dataclasses.fields(ModelSpec)}
    unknown = set(entry) - known
    if unknown:
        raise CatalogError(f"catalog entry {entry.get('id', '?')} has unknown fields {sorted(unknown)}")
    data = dict(entry)
    data["gguf_quants"] = tuple(data.get("gguf_quants", ()))
    try:
        return ModelSpec(**data)
    except TypeError as exc:
        raise CatalogError(f"catalog entry {entry.get('id', '?')} is incomplete: {exc}") from None


@functools.lru_cache(maxsize=4)
def load_catalog(path: str | None = None) -> tuple[ModelSpec, ...]:
    """Every catalog model, smallest first."""
    with open(path or CATALOG_PATH, "rb") as fh:
        data = tomllib.load(fh)
    return tuple(sorted((_spec_from_toml(e) for e in data.get("model", [])), key=lambda m: m.params))


def get(model_id: str, catalog: tuple[ModelSpec, ...] | None = None) -> ModelSpec:
    """A catalog model by id, name or any of its repos (case-insensitive)."""
    wanted = model_id.lower()
    for spec in catalog or load_catalog():
        if wanted in {spec.id.lower(), spec.name.lower(), spec.gguf_repo.lower(), spec.gptq_repo.lower(),
                      spec.fp16_repo.lower()} - {""}:
            return spec
    raise CatalogError(f"unknown model {model_id!r}. Known ids: "
                       + ", ".join(s.id for s in catalog or load_catalog()))


CONFIG_FIELDS = {  # our name: (config.json keys tried in order, what it is)
    "layers": (("num_hidden_layers", "n_layer", "num_layers"), "number of layers"),
    "hidden": (("hidden_size", "n_embd", "d_model"), "hidden size"),
    "heads": (("num_attention_heads", "n_head"), "attention heads"),
    "vocab": (("vocab_size",), "vocabulary size"),
    "ffn": (("intermediate_size", "ffn_dim", "n_inner"), "feed-forward size"),
    "max_context": (("max_position_embeddings", "n_positions", "seq_length"), "maximum context"),
}


def _from_config(config: dict[str, Any], repo_id: str) -> ModelSpec:
    if not isinstance(config, dict):
        raise CatalogError(f"config.json of {repo_id or 'the model'} is not a JSON object")
    cfg = {**config, **config.get("text_config", {})}  # multimodal models nest the language model
    values: dict[str, int] = {}
    missing: list[str] = []
    for ours, (keys, what) in CONFIG_FIELDS.items():
        found: int | None = next((cfg[k] for k in keys if isinstance(cfg.get(k), int) and cfg[k] > 0), None)
        if found is None:
            missing.append(f"{keys[0]} ({what})")
        else:
            values[ours] = found
    if missing:
        raise CatalogError(f"config.json of {repo_id or 'the model'} lacks " + ", ".join(missing)
                           + "; localllm needs these to estimate memory.")
    heads, hidden, layers = values["heads"], values["hidden"], values["layers"]
    kv = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 0)
    active = int(cfg.get("num_experts_per_tok") or 0)
    ffn = int(cfg.get("moe_intermediate_size") or values["ffn"]) if experts else values["ffn"]
    tied = bool(cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", True)))
    window, pattern = _config_sliding(cfg, layers)
    per_layer = 2 * hidden * heads * head_dim + 2 * hidden * kv * head_dim + 3 * hidden * ffn * max(1, experts)
    params = layers * (per_layer + 2 * hidden) + values["vocab"] * hidden * (1 if tied else 2) + hidden
    name = repo_id.rsplit("/", 1)[-1] if repo_id else str(cfg.get("_name_or_path") or "model")
    return ModelSpec(id=name.lower(), name=name, params=params, layers=layers, hidden=hidden,
                     ffn=ffn, heads=heads, kv_heads=kv, head_dim=head_dim, vocab=values["vocab"],
                     max_context=values["max_context"], family=str(cfg.get("model_type", "")),
                     tied_embeddings=tied, sliding_window=window, sliding_pattern=pattern,
                     experts=experts, experts_active=active, fp16_repo=repo_id, source="config.json",
                     checkpoint_bits=32 if str(cfg.get("torch_dtype") or cfg.get("dtype")) == "float32" else 16)


def _config_sliding(cfg: dict[str, Any], layers: int) -> tuple[int, int]:
    window = cfg.get("sliding_window")
    if not isinstance(window, int) or window <= 0 or cfg.get("use_sliding_window") is False:
        return 0, 0
    kinds = cfg.get("layer_types")
    if isinstance(kinds, list) and kinds:
        n_global = sum(1 for k in kinds if k != "sliding_attention")
        return window, (round(layers / n_global) if n_global else 0)
    if cfg.get("sliding_window_pattern"):
        return window, int(cfg["sliding_window_pattern"])
    return window, 2 if cfg.get("model_type") == "gemma2" else 0


def _from_gguf(path: str | os.PathLike[str]) -> ModelSpec:
    from localllm.models.gguf_check import read_layout

    layout = read_layout(path)  # ModelFileError for a damaged file
    arch = layout.info.architecture
    fields = {"layers": "block_count", "hidden": "embedding_length", "heads": "attention.head_count",
              "max_context": "context_length"}
    values = {k: layout.arch_value(v) for k, v in fields.items()}
    missing = [f"{arch}.{fields[k]}" for k, v in values.items() if not isinstance(v, int)]
    if missing:
        raise CatalogError(f"GGUF file {layout.info.path} lacks {', '.join(missing)} in its header; "
                           "it cannot be estimated (is it a language model?).")
    names = {t.name: t for t in layout.tensors}
    embd = names.get("token_embd.weight")
    vocab = layout.arch_value("vocab_size") or (embd.n_elements // values["hidden"] if embd else 0)
    kv = layout.arch_value("attention.head_count_kv")
    heads = values["heads"]
    window = int(layout.arch_value("attention.sliding_window") or 0)
    stem = Path(layout.info.path).stem
    return ModelSpec(
        id=stem.lower(), name=stem, params=layout.info.n_params, layers=values["layers"],
        hidden=values["hidden"], ffn=int(layout.arch_value("feed_forward_length") or 4 * values["hidden"]),
        heads=heads, kv_heads=int(kv) if isinstance(kv, int) else heads,
        head_dim=int(layout.arch_value("attention.key_length") or values["hidden"] // heads),
        vocab=int(vocab), max_context=values["max_context"], family=arch,
        tied_embeddings="output.weight" not in names, sliding_window=window,
        sliding_pattern=GGUF_SWA_PATTERN.get(arch, 0) if window else 0,
        experts=int(layout.arch_value("expert_count") or 0),
        experts_active=int(layout.arch_value("expert_used_count") or 0),
        source="gguf", gguf_path=layout.info.path, gguf_quant=layout.info.quant,
    )


def spec_from_hub(repo_id: str, revision: str | None = None, cfg: HubConfig | None = None) -> ModelSpec:
    """A Hub repo's config.json, fetched into the shared HF cache; Hub failures are localllm.hub.repos's
    errors (not found, gated, offline ...). cfg: a localllm.hub.repos.HubConfig (default: the environment)."""
    import json

    from huggingface_hub import hf_hub_download

    from localllm.hub.repos import HubConfig, RemoteFileNotFound, hub_errors, offline_error

    cfg = cfg or HubConfig.from_env()
    if cfg.offline:
        raise offline_error(cfg)
    try:
        with hub_errors(cfg, repo_id, "config.json", revision):
            path = hf_hub_download(repo_id, "config.json", revision=revision, endpoint=cfg.endpoint,
                                   cache_dir=cfg.cache_dir, token=cfg.token_arg, etag_timeout=cfg.timeout_s)
    except RemoteFileNotFound:
        raise CatalogError(f"{repo_id} has no config.json, so it is not a transformers checkpoint; for a "
                           "GGUF repo download the .gguf file and evaluate it by path.") from None
    try:
        config = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise CatalogError(f"config.json of {repo_id} is not valid JSON ({exc})") from None
    return ModelSpec.from_config(config, repo_id)


__all__ = ["CatalogError", "ModelSpec", "get", "load_catalog", "spec_from_hub"]
