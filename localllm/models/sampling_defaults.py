"""A model's sampling defaults, and where each value came from (issue 24).

Each knob takes the first value these give, in this order:

    user               what the user set for this run: a CLI flag, the TUI's settings box
    saved              what the user pinned for this model: a [models."<model>"] table in settings.toml
    settings           the global settings' value, where it differs from the app's default
    ollama             an `ollama:NAME[:TAG]` model's params layer (its Modelfile's PARAMETERs): what
                       Ollama runs it with, so above the GGUF's own keys
    gguf               the GGUF's own general.sampling.* keys (llama.cpp's names)
    generation_config  a checkpoint folder's generation_config.json (do_sample = false: greedy)
    catalog            the catalog entry: the model card's recommendation (data/catalog.toml)
    default            the app's defaults (localllm.config.options.SamplingParams)

A new conversation's system prompt is resolved the same way (system_prompt_for): --system or the
settings box, the model's table, the global setting where it is not the app's default, an Ollama
model's SYSTEM layer, the catalog's (a prompt measured to suit the model), the app's. A conversation
that has begun keeps the prompt it began with.

A [models."<model>"] table is found by any of the model's names: what was typed (`embedded`, a path),
the full path, the file's stem or the folder's name, or its catalog id (`smollm2-135m`).
A value in a model's file that is out of range is skipped, with a note; reading never fails a load.

Ollama's params count only for a model run by its `ollama:` ref: the same GGUF named by its path (or
as the embedded model, or through LM Studio) is resolved without them, even where the library lists an
Ollama copy among its sources. Their num_ctx is the context to load with when neither this run nor the
settings chose one (context_for); num_predict > 0 is max_tokens; keys with no knob here are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localllm.config import LoadOptions, SamplingParams
from localllm.config.settings import DEFAULT_SYSTEM_PROMPT, MODEL_KNOBS, Settings, SettingsError, check_value
from localllm.errors import LocalLLMError
from localllm.models import catalog
from localllm.models.catalog import ModelSpec
from localllm.models.embedded import FILENAME
from localllm.models.on_disk import catalog_model
from localllm.models.ref import ModelRef
from localllm.models.stores import PREFIXES, Source, resolve_found

SOURCES = ("user", "saved", "settings", "ollama", "gguf", "generation_config", "catalog", "default")
# every knob a source may give: the numbers the settings also hold, and what ends a reply
KNOBS = (*MODEL_KNOBS, "stop", "stop_token_ids")
# llama.cpp's GGUF keys (gguf.constants Keys.General.SAMPLING_*) -> our knob; the others it defines
# (sequence, xtc_*, penalty_last_n, mirostat*) have no knob here
GGUF_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_p": "top_p",
    "general.sampling.top_k": "top_k",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repeat_penalty",
}
# transformers' GenerationConfig fields -> our knob
GENERATION_CONFIG_KEYS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repeat_penalty",
}
# Ollama's params layer (api/types.go Options, a Modelfile's PARAMETER names) -> our knob; num_predict
# (-> max_tokens) and num_ctx (-> the load's context) are read apart; the rest (seed, num_keep,
# repeat_last_n, mirostat*, num_gpu, ...) have no knob here and are ignored
OLLAMA_KEYS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "stop": "stop",
}
SHORT = {"temperature": "temp", "top_p": "top-p", "top_k": "top-k", "min_p": "min-p",
         "repeat_penalty": "repeat", "max_tokens": "max", "stop": "stop", "stop_token_ids": "eos ids"}


@dataclass
class SamplingRequest:
    """What the user asked for, kept by a session so each model it loads is resolved afresh."""

    run: dict[str, Any] = field(default_factory=dict)  # knob -> value set for this run
    settings: Settings | None = None  # the saved settings: global values and per-model tables
    base: SamplingParams = field(default_factory=SamplingParams)  # seed, ignore_eos: not resolved here
    ctx_given: bool = False  # this run set the context (--ctx): a model's own (Ollama's num_ctx) never replaces it


@dataclass
class ResolvedSampling:
    params: SamplingParams
    sources: dict[str, str]  # knob -> one of SOURCES; "system_prompt" among them
    notes: list[str] = field(default_factory=list)  # values found but not used, and why
    n_ctx: tuple[int, str] | None = None  # the model's own context and its source (Ollama's num_ctx)
    # the system prompt of a new conversation with this model, resolved like the knobs (its source is
    # sources["system_prompt"]); not a SamplingParams field: the session holds it beside the history
    system_prompt: str = DEFAULT_SYSTEM_PROMPT

    def value(self, knob: str) -> Any:
        return self.system_prompt if knob == "system_prompt" else getattr(self.params, knob)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """{"temperature": {"value": 0.2, "from": "catalog"}, ...}: for --json, plans and manifests."""
        return {knob: {"value": _plain(self.value(knob)), "from": source}
                for knob, source in self.sources.items()}

    def line(self) -> str:
        """One compact line for a panel: `temp 0.2 catalog · top-p 0.9 catalog · top-k 40 default ...`."""
        parts = []
        for knob, source in self.sources.items():
            value = self.value(knob)
            if knob == "system_prompt":  # too long for the line: only where it came from
                parts.append(f"system {source}")
                continue
            if knob in ("stop", "stop_token_ids") and not value:
                continue
            shown = ",".join(map(str, value)) if isinstance(value, list) else f"{value:g}"
            parts.append(f"{SHORT[knob]} {shown} {source}")
        return " · ".join(parts)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def resolve_sampling(model: str | Path | ModelRef, request: SamplingRequest | None = None) -> ResolvedSampling:
    """The sampling for `model` with each knob's source (see the module's docstring)."""
    request = request or SamplingRequest()
    ref = model if isinstance(model, ModelRef) else ModelRef.parse(model)
    notes: list[str] = []
    stored = store_source(ref)  # scans the tool's whole store: once, for the three layers that read it
    spec = catalog_entry(ref, stored)
    ollama, n_ctx = ollama_defaults(ref, notes, stored)
    run = {k: v for k, v in request.run.items() if k != "system_prompt"}
    saved = saved_for(ref, request.settings, spec)
    layers: list[tuple[str, dict[str, Any]]] = [
        ("user", _checked(run, "this run's setting", notes)),
        ("saved", saved),
        ("settings", _global(request.settings)),
        ("ollama", ollama),
        ("gguf", gguf_sampling(stored.path if stored is not None else ref.path, notes)
         if ref.backend == "llama_cpp" else {}),
        ("generation_config", generation_config_sampling(ref.path, notes) if ref.backend == "transformers"
         else {}),
        ("catalog", _checked(spec.sampling, f"catalog entry {spec.id}", notes) if spec else {}),
    ]
    defaults = SamplingParams()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for knob in KNOBS:
        source, value = next(((name, layer[knob]) for name, layer in layers if knob in layer),
                             ("default", getattr(defaults, knob)))
        values[knob], sources[knob] = _plain(value), source
    params = dataclasses.replace(request.base, **values)
    system, sources["system_prompt"] = system_prompt_for(request, saved, spec, stored)
    return ResolvedSampling(params, sources, notes, None if n_ctx is None else (n_ctx, "ollama"), system)


def system_prompt_for(request: SamplingRequest, saved: dict[str, Any], spec: ModelSpec | None = None,
                      stored: Source | None = None) -> tuple[str, str]:
    """A new conversation's system prompt and its source, in the knobs' order: this run's, the model's
    saved table's (`saved`, saved_for's), the global setting where it is not the app's default, Ollama's
    SYSTEM layer (of `stored`, the ref's store entry), the catalog's, the app's. An empty prompt set by
    the user is kept: it means none."""
    settings = request.settings
    layers = [
        ("user", request.run.get("system_prompt")),
        ("saved", saved.get("system_prompt")),
        ("settings", settings.system_prompt if settings is not None
         and settings.system_prompt != DEFAULT_SYSTEM_PROMPT else None),
        ("ollama", (stored.system or None) if stored is not None and stored.tool == "ollama" else None),
        ("catalog", (spec.system_prompt or None) if spec is not None else None),
    ]
    return next(((str(value), name) for name, value in layers if value is not None),
                (DEFAULT_SYSTEM_PROMPT, "default"))


def context_for(n_ctx: int, resolved: ResolvedSampling | None = None,
                request: SamplingRequest | None = None) -> tuple[int, str]:
    """The context to load with, and where it came from: `n_ctx` (the load options') when this run set it
    (`user`) or it is not the app's default (`settings` when the settings hold it, else `user`); else the
    model's own (`ollama`), else the app's default (`default`). A context set to the app's default
    itself, in the settings, reads as unset, as `settings` does for the sampling."""
    if request is not None and request.ctx_given:
        return n_ctx, "user"
    if n_ctx != LoadOptions().context:
        settings = request.settings if request is not None else None
        return n_ctx, "settings" if settings is not None and settings.context == n_ctx else "user"
    if resolved is not None and resolved.n_ctx is not None:
        return resolved.n_ctx
    return n_ctx, "default"


def model_keys(ref: ModelRef, spec: ModelSpec | None = None) -> list[str]:
    """The names a [models."<model>"] table may use for this model, the most specific first."""
    keys = [ref.text]
    if ref.backend != "remote":
        try:
            keys.append(ref.path)
        except LocalLLMError:  # the embedded model's package is missing: the load says so
            pass
    keys.append(ref.name)
    if spec is not None:
        keys.append(spec.id)
    return list(dict.fromkeys(keys))


def saved_for(ref: ModelRef, settings: Settings | None, spec: ModelSpec | None = None) -> dict[str, Any]:
    """The [models."<model>"] table that names this model (checked when the settings were read)."""
    if settings is None or not settings.models:
        return {}
    return next((dict(settings.models[k]) for k in model_keys(ref, spec) if k in settings.models), {})


def _global(settings: Settings | None) -> dict[str, Any]:
    """The global settings' sampling values that differ from the app's defaults: a file written by an
    older localllm holds every default, and those must not hide the model's own."""
    if settings is None:
        return {}
    defaults = SamplingParams()
    return {k: getattr(settings, k) for k in MODEL_KNOBS if getattr(settings, k) != getattr(defaults, k)}


def _checked(values: dict[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    """Knobs within the settings' ranges; the others become notes."""
    out: dict[str, Any] = {}
    for knob, value in values.items():
        if knob == "stop":
            if isinstance(value, str):
                value = [value]
            if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
                out[knob] = list(value)
            else:
                notes.append(f"{where}: stop {value!r} is not a list of strings; ignored.")
            continue
        if knob == "stop_token_ids":
            ids = [value] if isinstance(value, int) else value
            if isinstance(ids, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                             for v in ids):
                out[knob] = list(ids)
            else:
                notes.append(f"{where}: token ids {value!r} are not whole numbers; ignored.")
            continue
        if knob not in MODEL_KNOBS:
            notes.append(f"{where}: {knob!r} is not a sampling setting localllm knows; ignored.")
            continue
        if isinstance(value, float) and knob == "top_k" and value.is_integer():
            value = int(value)
        if isinstance(value, float) and math.isfinite(value):
            value = round(value, 6)  # GGUF stores float32: 0.2 reads as 0.20000000298
        try:
            out[knob] = check_value(knob, value)
        except SettingsError as exc:
            notes.append(f"{where}: {exc} Ignored.")
    return out


def ollama_defaults(ref: ModelRef, notes: list[str] | None = None,
                    stored: Source | None = None) -> tuple[dict[str, Any], int | None]:
    """An `ollama:` ref's params layer (of `stored`, its store entry) as knobs, with its num_ctx; ({}, None)
    for any other model, one without the layer, or a ref the store cannot resolve (the load says why)."""
    if stored is None or stored.tool != "ollama" or not stored.params:
        return {}, None
    return ollama_options(json.loads(stored.params), f"{ref.text} (Ollama's params)", notes)


def store_source(ref: ModelRef) -> Source | None:
    """An `ollama:` or `lmstudio:` ref's store entry; None for any other model or one the store cannot
    resolve (the load says why)."""
    if not ref.text.startswith(PREFIXES):
        return None
    try:
        return resolve_found(ref.text).source
    except LocalLLMError:
        return None


def ollama_options(params: dict[str, Any], where: str = "Ollama's params",
                   notes: list[str] | None = None) -> tuple[dict[str, Any], int | None]:
    """Ollama's option names as knobs (num_predict > 0 as max_tokens; -1 and -2, Ollama's "no limit"
    and "fill the context", leave ours), and num_ctx checked as the settings check context. Unknown keys
    are ignored; a value out of range is left out with a note."""
    notes = notes if notes is not None else []
    found = {knob: params[key] for key, knob in OLLAMA_KEYS.items() if key in params}
    predict = _whole(params.get("num_predict"))
    if predict is not None and not (isinstance(predict, int) and not isinstance(predict, bool) and predict <= 0):
        found["max_tokens"] = predict
    knobs = _checked(found, where, notes)
    n_ctx = None
    if params.get("num_ctx") is not None:
        try:
            n_ctx = check_value("context", _whole(params["num_ctx"]))
        except SettingsError as exc:
            notes.append(f"{where}: num_ctx: {exc} Ignored.")
    return knobs, n_ctx


def _whole(value: Any) -> Any:
    """4096.0 -> 4096 (JSON numbers Ollama's Go types read as int); anything else as it is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def gguf_sampling(path: str | Path, notes: list[str] | None = None) -> dict[str, Any]:
    """A GGUF's general.sampling.* values as knobs; {} for a file without them (or one that cannot be
    read: the load reports that)."""
    from localllm.models.gguf_check import read_layout

    try:
        metadata = read_layout(path).metadata
    except (LocalLLMError, OSError):
        return {}
    found = {knob: metadata[key] for key, knob in GGUF_KEYS.items() if key in metadata}
    return _checked(found, f"{Path(path).name} (general.sampling)", notes if notes is not None else [])


def generation_config_sampling(folder: str | Path, notes: list[str] | None = None) -> dict[str, Any]:
    """A checkpoint folder's generation_config.json as knobs: do_sample = false is greedy (temperature
    0, what transformers does with it), eos_token_id becomes stop_token_ids."""
    notes = notes if notes is not None else []
    path = Path(folder) / "generation_config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        notes.append(f"{path}: cannot be read ({exc}); its sampling is ignored.")
        return {}
    if not isinstance(data, dict):
        notes.append(f"{path}: not a JSON object; its sampling is ignored.")
        return {}
    found: dict[str, Any] = {knob: data[key] for key, knob in GENERATION_CONFIG_KEYS.items()
                             if data.get(key) is not None}
    if data.get("do_sample") is False:  # greedy: transformers ignores temperature, top-p and top-k
        found = {"temperature": 0.0, **{k: v for k, v in found.items() if k == "repeat_penalty"}}
    if data.get("eos_token_id") is not None:
        found["stop_token_ids"] = data["eos_token_id"]
    return _checked(found, str(path), notes)


def catalog_entry(ref: ModelRef, stored: Source | None = None) -> ModelSpec | None:
    """The catalog model `ref` is, when it can tell: the embedded model, a GGUF named as its catalog
    repo names its quants, a file or folder in the Hugging Face cache of one of its repos, or an Ollama
    or LM Studio model of its shape and name (`stored`: its store entry, when already resolved)."""
    specs = catalog.load_catalog()
    if ref.is_embedded or Path(ref.text).name == FILENAME:  # a reload names the embedded file itself
        return next((s for s in specs if s.embedded), None)
    if ref.backend == "remote":
        return None
    if ref.text.startswith(PREFIXES):  # ollama:NAME, lmstudio:PUBLISHER/MODEL: by shape and name
        stored = stored or store_source(ref)
        return catalog_model(specs, stored) if stored is not None else None
    path = Path(ref.text).expanduser()
    for spec in specs:
        repos = [r for r in (spec.gguf_repo, spec.fp16_repo, spec.gptq_repo) if r]
        if any(f"models--{r.replace('/', '--')}" in path.parts for r in repos):
            return spec
        if ref.backend == "llama_cpp" and spec.gguf_file:
            pattern = re.escape(spec.gguf_file).replace(re.escape("{quant}"), r"[\w.-]+")
            if re.fullmatch(pattern, path.name, flags=re.IGNORECASE):
                return spec
        if ref.backend == "transformers" and spec.fp16_repo and path.name.lower() == \
                spec.fp16_repo.rsplit("/", 1)[-1].lower():
            return spec
    return None
