"""Where localllm keeps things: platformdirs locations (LOCALLLM_HOME overrides them all) and the
package's own data folder."""

from __future__ import annotations

import os
from pathlib import Path

# localllm/data: the catalog, calibration text, prompt sets and machine profiles shipped in the wheel
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data"


def _platform_dir(kind: str) -> Path:
    """LOCALLLM_HOME when set (it moves everything), else platformdirs' user_<kind>_dir."""
    override = os.environ.get("LOCALLLM_HOME")
    if override:
        return Path(override)
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_dir")("localllm", appauthor=False))


def home() -> Path:
    """Root for localllm's own files (logs, settings, conversations)."""
    return _platform_dir("data")


def logs_dir() -> Path:
    path = home() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    """Where settings.toml and user themes live: the platform's config folder, or LOCALLLM_HOME."""
    return _platform_dir("config")


def data_dir() -> Path:
    """Where saved conversations live: the data folder (home()), also moved by LOCALLLM_HOME."""
    return home()


def hf_hub_cache() -> Path:
    """The standard Hugging Face hub cache, resolved as huggingface_hub.constants does but now, not
    when huggingface_hub was first imported (and without importing it: `localllm hw` names this disk)."""
    env = os.environ
    explicit = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    hf_home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(hf_home)).expanduser() / "hub"
