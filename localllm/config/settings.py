"""User settings: one TOML file in the config folder, validated with messages that name the key.

Headless (the CLI, the TUI and tests all use it); never imports textual."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from localllm.config import (
    AUTO_LAYERS,
    EXTRA_BUFFERS,
    KV_TYPES,
    LoadOptions,
    SamplingParams,
    config_dir,
    state,
)
from localllm.config.redact import redact
from localllm.errors import LocalLLMError

SETTINGS_FILE = "settings.toml"
DEFAULT_THEME = "localllm-dark"


DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."  # a model may bring its own (catalog, Ollama)


def _doc(text: str, **rules: Any) -> dict[str, Any]:
    """Field metadata: a one-line description (shown in the file and the screen) and its limits."""
    return {"doc": text, **rules}


_LOAD, _SAMPLING = LoadOptions(), SamplingParams()  # the single source of the run defaults


@dataclass
class Settings:
    """Everything localllm remembers between runs; defaults match the CLI's."""

    model: str = field(default="", metadata=_doc(
        "model to load at start: a GGUF path, a model folder or a server URL; empty: the embedded model"))
    # no model-size cap here: Llama 4 Scout trains 10M tokens; what does not fit is refused by the load plan
    context: int = field(default=_LOAD.context, metadata=_doc("context size in tokens", min=128, max=2**30))
    threads: int = field(default=_LOAD.threads, metadata=_doc("CPU threads; 0: one per physical core", min=0, max=1024))
    gpu_layers: int = field(default=_LOAD.gpu_layers, metadata=_doc(
        "layers offloaded to the GPU; auto (-2): the load plan places them, -1: all, 0: none",
        min=AUTO_LAYERS, max=100_000, words={"auto": AUTO_LAYERS}))
    extra_buffers: str = field(default="auto", metadata=_doc(
        "llama.cpp's extra CPU buffer types (AMX/repack kernels); auto: on unless they crashed this CPU "
        "(see localllm doctor)", choices=EXTRA_BUFFERS))
    kv_type: str = field(default=_LOAD.kv_type, metadata=_doc(
        "llama.cpp's KV cache type: f16, or q8_0 / q4_0 (about half / a quarter of the memory, with flash "
        "attention)", choices=KV_TYPES))
    system_prompt: str = field(default=DEFAULT_SYSTEM_PROMPT, metadata=_doc(
        "system prompt of new conversations"))
    temperature: float = field(default=_SAMPLING.temperature, metadata=_doc("sampling temperature; 0: greedy", min=0.0, max=5.0))
    top_p: float = field(default=_SAMPLING.top_p, metadata=_doc("nucleus sampling: keep this much probability mass",
                                                     min=0.0, max=1.0))
    top_k: int = field(default=_SAMPLING.top_k, metadata=_doc("keep the k likeliest tokens; 0: all", min=0, max=1_000_000))
    min_p: float = field(default=_SAMPLING.min_p, metadata=_doc(
        "drop tokens less likely than min_p times the top one", min=0.0, max=1.0))
    repeat_penalty: float = field(default=_SAMPLING.repeat_penalty, metadata=_doc(
        "penalty on repeated tokens; 1: none", min=0.1, max=10.0))
    max_tokens: int = field(default=_SAMPLING.max_tokens, metadata=_doc("longest reply in tokens", min=1, max=1_048_576))
    seed: int = field(default=-1, metadata=_doc(
        "sampling seed for repeatable replies; random (-1): a new one each reply", min=-1, max=2**32 - 1,
        words={"random": -1}))
    theme: str = field(default=DEFAULT_THEME, metadata=_doc(
        "TUI theme: a shipped one (localllm-dark, localllm-light, localllm-high-contrast), a Textual "
        "one, or a user theme from the themes folder", nonempty=True))
    save_conversations: bool = field(default=True, metadata=_doc(
        "save conversations to the history database as they happen"))
    endpoints: list[str] = field(default_factory=list, metadata=_doc(
        "saved OpenAI-compatible servers (http://host:port), listed with their models in the models screen"))
    model_folders: list[str] = field(default_factory=list, metadata=_doc(
        "folders of GGUF files to list in the library, read-only (Ollama's and LM Studio's stores are found "
        "without this)", paths=True))
    api_key_env: str = field(default="LOCALLLM_API_KEY", metadata=_doc(
        "the environment variable that holds the servers' API key (the key itself is never stored)",
        nonempty=True, env_name=True))
    # [models."<model>"] tables: sampling pinned for one model (MODEL_KNOBS), which wins over the global
    # values above and the model's own defaults (localllm.models.sampling_defaults); not a form field
    models: dict[str, dict[str, Any]] = field(default_factory=dict)


MODELS_KEY = "models"
# Keys renamed so that a knob has one name in the file, LoadOptions/SamplingParams, the CLI and --json
# (docs/ARCHITECTURE.md, "One name per knob"): an old file's key is read as the new one; saving writes
# the new name. A file holding both spellings keeps the new one's value.
ALIASES = {"n_ctx": "context", "kv_cache_type": "kv_type", "cpu_extra_buffers": "extra_buffers"}
# Keys no longer used, accepted and ignored with a notice (never an error): `backend` did nothing, since
# the model's form picks its backend (a .gguf file: llama_cpp, a checkpoint folder: transformers, a URL:
# remote; localllm.models.ref), so a path is never ambiguous and the setting could only contradict it.
RETIRED = {"backend": "the backend follows the model (a .gguf file: llama.cpp, a checkpoint folder: "
                      "transformers, a server URL: remote)"}
# the settings one model's table may pin: the sampling knobs a model's own metadata may also give
MODEL_KNOBS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens")
MODEL_TABLE_KEYS = (*MODEL_KNOBS, "system_prompt")  # what a [models."<model>"] table may pin
FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)
                                             if f.name != MODELS_KEY}
# Each field's plain type from its annotation (list[str] -> list), read once: the checks below need them.
TYPES: dict[str, type] = {k: typing.get_origin(t) or t for k, t in typing.get_type_hints(Settings).items()
                          if k != MODELS_KEY}


class SettingsError(LocalLLMError):
    """A settings value (or the whole file) is invalid; the message names the key, the file and the rule."""

    def __init__(self, message: str, key: str | None = None, path: Path | None = None,
                 problems: list[str] | None = None, notice: bool = False) -> None:
        self.key = key
        self.notice = notice  # a retired key, ignored: reported, never fatal
        self.path = path
        self.problems = problems or [message]
        super().__init__(message)


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def allowed(key: str) -> str:
    """What `key` accepts, in words (used in every message about it)."""
    meta, kind = FIELDS[key].metadata, TYPES[key]
    if "choices" in meta:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if kind is bool:
        return "true or false"
    if kind is list and meta.get("paths"):
        return "a list of folder paths (comma-separated in the settings screen)"
    if kind is list:
        return "a list of server URLs such as http://127.0.0.1:8080 (comma-separated in the settings screen)"
    if meta.get("env_name"):
        return "an environment variable name (letters, digits and _)"
    if kind in (int, float):
        noun = "an integer" if kind is int else "a number"
        words = "".join(f" or {w!r}" for w in meta.get("words", {}))
        return f"{noun} from {meta['min']} to {meta['max']}{words}"
    return "a non-empty string" if meta.get("nonempty") else "a string"


def check_value(key: str, value: Any, where: str = "") -> Any:
    """Return `value` as the field's type, or raise SettingsError naming the key (and `where`)."""
    if key not in FIELDS:
        known = ", ".join(FIELDS)
        raise SettingsError(f"Unknown setting {key!r}{where}. Known settings: {known}.", key=key)
    kind, meta = TYPES[key], FIELDS[key].metadata
    if isinstance(value, str) and value.strip().lower() in meta.get("words", {}):
        value = meta["words"][value.strip().lower()]  # gpu_layers = "auto" in the file
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True  # TOML writes 1 for 1.0; both mean the same
    if ok and kind in (int, float):
        ok = not (isinstance(value, float) and math.isnan(value)) and meta["min"] <= value <= meta["max"]
    if ok and "choices" in meta:
        ok = value in meta["choices"]
    if ok and meta.get("nonempty"):
        ok = bool(value.strip())
    if ok and meta.get("env_name"):
        ok = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) is not None
    if ok and kind is list and meta.get("paths"):
        ok = all(isinstance(v, str) and v.strip() and "\0" not in v for v in value)
        value = list(dict.fromkeys(v.strip() for v in value)) if ok else value
    elif ok and kind is list:
        ok = all(isinstance(v, str) and _is_url(v) for v in value)
        value = list(dict.fromkeys(v.strip().rstrip("/") for v in value)) if ok else value
    if not ok:
        raise SettingsError(f"Setting {key!r}{where} must be {allowed(key)} (got {value!r}).", key=key)
    return value


def _is_url(text: str) -> bool:
    parsed = urlparse(text.strip())
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


def shown_value(key: str, value: Any) -> str:
    """How a form shows `value`: its word where the field has one for it (auto, random)."""
    words = {v: w for w, v in FIELDS[key].metadata.get("words", {}).items()}
    if TYPES[key] is list:
        return ", ".join(value)
    return str(words.get(value, value))


def parse_field(key: str, text: str) -> Any:
    """Parse what was typed into a form field for `key`; SettingsError names the key on failure."""
    kind = TYPES[key]
    raw = text.strip()
    try:
        if kind is int:  # a word (auto, random) goes on as typed: check_value maps it
            value: Any = raw if raw.lower() in FIELDS[key].metadata.get("words", {}) else int(raw)
        elif kind is float:
            value = float(raw)
        elif kind is bool:
            value = {"true": True, "false": False}[raw.lower()]
        elif kind is list and FIELDS[key].metadata.get("paths"):
            value = [v.strip() for v in raw.split(",") if v.strip()]  # a path may hold spaces
        elif kind is list:
            value = [v for v in re.split(r"[,\s]+", raw) if v]
        else:  # paths and names: stray spaces are typos; the system prompt is kept as typed
            value = text if key == "system_prompt" else raw
    except (ValueError, KeyError):
        raise SettingsError(f"Setting {key!r} must be {allowed(key)} (got {text!r}).", key=key) from None
    return check_value(key, value)


def from_dict(data: dict[str, Any], path: Path | None = None) -> tuple[Settings, list[SettingsError]]:
    """Settings from a parsed TOML table: each invalid or unknown key becomes one error (and its default)."""
    where = f" in {path}" if path else ""
    values: dict[str, Any] = {}
    errors: list[SettingsError] = []
    for key, value in data.items():
        if key == MODELS_KEY:
            values[key] = _model_tables(value, where, path, errors)
            continue
        if key in RETIRED:
            errors.append(SettingsError(f"Setting {key!r}{where} is no longer used and is ignored: "
                                        f"{RETIRED[key]}. Saving the settings drops it.", path=path, notice=True))
            continue
        named = where
        if key in ALIASES:
            key, named = ALIASES[key], f" (written as its old name {key!r}){where}"
            if key in data:  # both spellings: the new one's value wins
                continue
        try:
            values[key] = check_value(key, value, named)
        except SettingsError as exc:
            exc.path = path
            errors.append(exc)
    return Settings(**values), errors


def check_model_table(model: str, table: Any, where: str = "") -> dict[str, Any]:
    """One [models."<model>"] table, checked knob by knob; SettingsError names the model and the key."""
    if not isinstance(table, dict):
        raise SettingsError(f"Setting models.{model!r}{where} must be a table of sampling settings "
                            f"({', '.join(MODEL_TABLE_KEYS)}).", key=MODELS_KEY)
    checked: dict[str, Any] = {}
    for knob, value in table.items():
        if knob not in MODEL_TABLE_KEYS:
            raise SettingsError(f"Unknown setting {knob!r} for model {model!r}{where}. A model's table "
                                f"takes: {', '.join(MODEL_TABLE_KEYS)}.", key=MODELS_KEY)
        checked[knob] = check_value(knob, value, f" for model {model!r}{where}")
    return checked


def _model_tables(data: Any, where: str, path: Path | None, errors: list[SettingsError]) -> dict[str, dict[str, Any]]:
    """The per-model tables; an invalid table is dropped (its error kept), the others are kept."""
    if not isinstance(data, dict):
        errors.append(SettingsError(f"Setting 'models'{where} must be tables such as "
                                    f'[models."embedded"] (got {data!r}).', key=MODELS_KEY, path=path))
        return {}
    tables: dict[str, dict[str, Any]] = {}
    for model, table in data.items():
        try:
            tables[str(model)] = check_model_table(str(model), table, where)
        except SettingsError as exc:
            exc.path = path
            errors.append(exc)
    return tables


def read_settings(path: Path | None = None) -> tuple[Settings, list[SettingsError]]:
    """The file's settings and every problem found in it; a missing file means defaults."""
    path = path or settings_path()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return Settings(), []
    except tomllib.TOMLDecodeError as exc:
        return Settings(), [SettingsError(f"The settings file {path} is not valid TOML ({exc}); fix or "
                                          f"delete it to use the defaults.", path=path)]
    except OSError as exc:
        return Settings(), [SettingsError(f"Cannot read the settings file {path}: {exc.strerror}.", path=path)]
    return from_dict(data, path)


def load_settings(path: Path | None = None) -> Settings:
    """Strict: the settings, or a SettingsError listing every invalid key (for the CLI and tests)."""
    settings, all_errors = read_settings(path)
    errors = [e for e in all_errors if not e.notice]
    if errors:
        problems = [str(e) for e in errors]
        raise SettingsError("\n".join(problems), key=errors[0].key, path=path or settings_path(),
                            problems=problems)
    return settings


def load_settings_lenient(path: Path | None = None) -> tuple[Settings, list[str]]:
    """Never fails, so the app can start: valid keys are kept, the rest fall back to their defaults,
    and each problem comes back as a warning to show."""
    settings, errors = read_settings(path)
    warnings = [f"{e} Using the default." if e.key else f"{e}" for e in errors]
    return settings, warnings


def dumps(settings: Settings) -> str:
    """The file's text: every key with its description as a comment, so the file documents itself."""
    import tomli_w

    lines = ["# localllm settings: edit here or in the TUI's settings screen.", ""]
    for key, f in FIELDS.items():
        lines.append(f"# {f.metadata['doc']} ({allowed(key)})")
        # a server URL's user:pass@ stays in memory only (the key belongs in $api_key_env)
        lines.append(tomli_w.dumps({key: redact(getattr(settings, key))}).rstrip("\n"))
    lines += ["", "# sampling pinned for one model, over its own defaults and the values above, e.g.",
              '# [models."embedded"]', "# temperature = 0.2"]
    if settings.models:  # tables come after every top-level key
        lines.append(tomli_w.dumps({MODELS_KEY: settings.models}).rstrip("\n"))
    return "\n".join(lines) + "\n"


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Validate, then write atomically: a crash mid-write leaves the old file, never half a new one."""
    path = path or settings_path()
    for key in FIELDS:
        check_value(key, getattr(settings, key))  # an invalid value is refused, not saved
    for model, table in settings.models.items():
        check_model_table(model, table)
    text = dumps(settings)
    state.write_text(path, text)  # unique temp file, fsync, rename: a crash leaves the old file
    return path


def to_load_options(settings: Settings, base: LoadOptions | None = None) -> LoadOptions:
    """LoadOptions from the settings; fields the settings do not cover are kept from `base`."""
    base = base or LoadOptions()
    return dataclasses.replace(base, context=settings.context, threads=settings.threads,
                               gpu_layers=settings.gpu_layers, seed=max(settings.seed, 0),
                               extra_buffers=settings.extra_buffers, kv_type=settings.kv_type,
                               api_key_env=base.api_key_env or settings.api_key_env)


def sampling_seed(seed: int) -> int | None:
    """A seed as the settings, --seed and /set take it, for SamplingParams: -1 ('random') is None, a fresh
    seed each reply."""
    return None if seed < 0 else seed


def to_sampling(settings: Settings, base: SamplingParams | None = None) -> SamplingParams:
    """SamplingParams from the settings (seed -1 becomes None: a fresh seed each reply)."""
    return dataclasses.replace(base or SamplingParams(), temperature=settings.temperature,
                               top_p=settings.top_p, top_k=settings.top_k, min_p=settings.min_p,
                               repeat_penalty=settings.repeat_penalty, max_tokens=settings.max_tokens,
                               seed=sampling_seed(settings.seed))
