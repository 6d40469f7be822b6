"""Textual themes from TOML files: the shipped ones (themes/ in the wheel) and the user's own.

A broken user theme file becomes a warning naming the file and the reason, never an error."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from textual.app import App
from textual.color import Color, ColorParseError
from textual.theme import Theme

from localllm.config import config_dir
from localllm.errors import LocalLLMError

DARK, LIGHT, HIGH_CONTRAST = "localllm-dark", "localllm-light", "localllm-high-contrast"

# The app's own theme variables, for themes that do not set them (Textual's built-in ones).
# Stylesheets reference these as $metric-good etc.; an App subclass returns this dict from
# get_theme_variable_defaults(), otherwise a stylesheet using them fails to parse under such themes.
VARIABLE_DEFAULTS: dict[str, str] = {
    "metric-good": "#4EBF71",
    "metric-bad": "#E5646E",
    "metric-warn": "#FFA62B",
    "metric-muted": "#8B93A1",
    "sparkline-rate": "#4EBF71",
    "sparkline-memory": "#56B6C2",
}

THEME_FIELDS = {f.name: f for f in dataclasses.fields(Theme)}
COLOUR_FIELDS = ("primary", "secondary", "warning", "error", "success", "accent", "foreground",
                 "background", "surface", "panel", "boost")
# Variables whose value is a colour (optionally "auto", plus an alpha percentage): checked here,
# so a typo is reported with its file instead of breaking the stylesheet when the theme is picked.
COLOUR_VARIABLE = re.compile(r"^(text(-muted|-disabled)?|border(-blurred)?|scrollbar.*|.*-(color|foreground|"
                             r"background))$")
ALPHA = re.compile(r"^\d+(\.\d+)?%$")


class ThemeFileError(LocalLLMError):
    """A theme file cannot be used; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"Theme file {path} is not used: {reason}.")


def shipped_themes_dir() -> Path | None:
    """The themes inside the installed package (localllm/themes), or themes/ of a source checkout."""
    installed = resources.files("localllm") / "themes"
    if installed.is_dir():
        return Path(str(installed))  # wheels install unzipped, so this is a real folder
    checkout = Path(__file__).resolve().parents[2] / "themes"
    return checkout if checkout.is_dir() else None


def user_themes_dir() -> Path:
    return config_dir() / "themes"


def _check_colour(value: Any, what: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a colour string such as \"#4EA1D3\" (got {value!r})")
    first, *rest = value.split()
    try:
        if first != "auto":
            Color.parse(first)
    except ColorParseError:
        raise ValueError(f"{what} is not a colour: {value!r}") from None
    if len(rest) > 1 or (rest and not ALPHA.match(rest[0])):
        raise ValueError(f"{what} must be a colour, optionally followed by an alpha like 40% (got {value!r})")


def theme_from_dict(data: dict[str, Any]) -> Theme:
    """A Theme from a parsed theme file; ValueError says what is wrong."""
    unknown = sorted(set(data) - set(THEME_FIELDS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(THEME_FIELDS)}")
    for key in ("name", "primary"):
        if key not in data:
            raise ValueError(f"the key {key!r} is required")
    if not isinstance(data["name"], str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", data["name"]):
        raise ValueError(f"name must be letters, digits, '-', '_' or '.' (got {data['name']!r})")
    for key in COLOUR_FIELDS:
        if key in data:
            _check_colour(data[key], key)
    for key in ("dark", "ansi"):
        if key in data and not isinstance(data[key], bool):
            raise ValueError(f"{key} must be true or false (got {data[key]!r})")
    for key in ("luminosity_spread", "text_alpha"):
        value = data.get(key, 0.5)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{key} must be a number from 0 to 1 (got {value!r})")
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ValueError("[variables] must be a table of name = \"value\" strings")
    for name, value in variables.items():
        if not isinstance(value, str):
            raise ValueError(f"variable {name!r} must be a string (got {value!r})")
        if name in VARIABLE_DEFAULTS or COLOUR_VARIABLE.match(name):
            _check_colour(value, f"variable {name!r}")
    theme = Theme(**data)
    theme.to_color_system().generate()  # what Textual does on switching to it: fail here, not then
    return theme


def load_theme_file(path: Path) -> Theme:
    """One theme file; ThemeFileError names the file and the reason."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeFileError(path, f"not valid TOML ({exc})") from None
    except OSError as exc:
        raise ThemeFileError(path, f"cannot be read ({exc.strerror})") from None
    try:
        return theme_from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ThemeFileError(path, str(exc)) from None


def _theme_files(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(folder.glob("*.toml"))


def load_themes(user_dir: Path | None = None) -> tuple[list[Theme], list[str]]:
    """Shipped themes, then user themes (a user theme with a shipped name replaces it); and warnings."""
    themes: dict[str, Theme] = {}
    warnings: list[str] = []
    folders: Iterable[Path | None] = (shipped_themes_dir(), user_dir or user_themes_dir())
    for folder in folders:
        for path in _theme_files(folder):
            try:
                theme = load_theme_file(path)
            except ThemeFileError as exc:
                warnings.append(str(exc))
                continue
            themes[theme.name] = theme
    if shipped_themes_dir() is None:
        warnings.append("localllm's own themes were not found (a broken install?); Textual's are available.")
    return list(themes.values()), warnings


def register_themes(app: App, user_dir: Path | None = None) -> list[str]:
    """Register every theme with `app`; returns the warnings to show (broken user theme files)."""
    themes, warnings = load_themes(user_dir)
    for theme in themes:
        app.register_theme(theme)
    return warnings
