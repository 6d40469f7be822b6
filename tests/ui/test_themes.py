"""Themes: the shipped ones load, register into a real App and recolour it; broken user themes
are warnings naming the file. Also the settings, conversations and help screens at 80x24."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.color import Color
from textual.command import CommandPalette
from textual.widgets import DataTable, Input, Select, Static, Switch

from localllm.backends.base import ModelInfo
from localllm.chat.conversations import ConversationStore
from localllm.chat.session import Turn
from localllm.config.settings import FIELDS, Settings
from localllm.runtime.metrics import ReplyStats
from localllm.ui.screens.conversations_screen import ConversationsScreen
from localllm.ui.screens.help_screen import HelpScreen, app_bindings
from localllm.ui.screens.settings_screen import SettingsScreen
from localllm.ui.themes import (
    DARK,
    HIGH_CONTRAST,
    LIGHT,
    VARIABLE_DEFAULTS,
    load_theme_file,
    load_themes,
    register_themes,
    shipped_themes_dir,
)
from tests.waits import palette_first, wait_for

SHIPPED = {DARK, LIGHT, HIGH_CONTRAST}
SMALL = (80, 24)


class ThemedApp(App):
    """The least an app needs: the themes registered and the app variables defaulted."""

    CSS = """
    #good { color: $metric-good; background: $background; }
    #bad { color: $metric-bad; }
    """
    BINDINGS = [("ctrl+n", "noop", "New chat"), ("ctrl+o", "noop", "Model")]

    def __init__(self, user_dir: Path | None = None) -> None:
        super().__init__()
        self.user_dir = user_dir
        self.theme_warnings = register_themes(self, user_dir)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return VARIABLE_DEFAULTS

    def compose(self) -> ComposeResult:
        yield Static("good", id="good")
        yield Static("bad", id="bad")

    def action_noop(self) -> None:
        pass


@pytest.fixture
def user_dir(tmp_path) -> Path:
    path = tmp_path / "themes"
    path.mkdir()
    return path


def test_shipped_themes_load_without_warnings(user_dir) -> None:
    assert shipped_themes_dir() is not None
    themes, warnings = load_themes(user_dir)
    assert warnings == []
    assert {t.name for t in themes} == SHIPPED
    for theme in themes:
        assert set(VARIABLE_DEFAULTS) <= set(theme.variables), theme.name  # every app colour is set
        assert theme.background and theme.foreground and theme.surface and theme.panel
    by_name = {t.name: t for t in themes}
    assert by_name[DARK].dark and by_name[HIGH_CONTRAST].dark and not by_name[LIGHT].dark


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours."""
    def lum(c: Color) -> float:
        def ch(v: int) -> float:
            v = v / 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
        return 0.2126 * ch(c.r) + 0.7152 * ch(c.g) + 0.0722 * ch(c.b)
    hi, lo = sorted((lum(Color.parse(a)), lum(Color.parse(b))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_text_colours_are_readable(name) -> None:
    theme = {t.name: t for t in load_themes()[0]}[name]
    need = 7.0 if name == HIGH_CONTRAST else 4.5  # WCAG AAA for high contrast, AA otherwise
    colours = {"foreground": theme.foreground, "warning": theme.warning, "error": theme.error,
               "success": theme.success, **{k: theme.variables[k] for k in VARIABLE_DEFAULTS}}
    for what, colour in colours.items():
        assert contrast(colour, theme.background) >= need, (name, what)


async def test_themes_register_into_a_real_app_and_recolour_it(user_dir) -> None:
    app = ThemedApp(user_dir)
    assert app.theme_warnings == []
    async with app.run_test(size=SMALL) as pilot:
        assert SHIPPED <= set(app.available_themes)
        for name in sorted(SHIPPED):
            app.theme = name
            await pilot.pause()
            theme = app.get_theme(name)
            assert app.query_one("#good").styles.color == Color.parse(theme.variables["metric-good"])
            assert app.query_one("#bad").styles.color == Color.parse(theme.variables["metric-bad"])
            assert app.query_one("#good").styles.background == Color.parse(theme.background)
        app.theme = "textual-light"  # a Textual theme: the app's defaults fill in its variables
        await pilot.pause()
        assert app.query_one("#good").styles.color == Color.parse(VARIABLE_DEFAULTS["metric-good"])


async def test_switching_theme_from_the_command_palette(user_dir) -> None:
    app = ThemedApp(user_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        app.theme = DARK
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), timeout=30)
        await pilot.press(*"theme")
        await wait_for(pilot, lambda: palette_first(app).startswith("Theme"), timeout=30)
        await pilot.press("enter")  # "Theme: change the current theme"
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette) and palette_first(app)
                       and not palette_first(app).startswith("Theme"), timeout=30)  # the themes listed
        await pilot.press(*"high-contrast")
        await wait_for(pilot, lambda: palette_first(app) == HIGH_CONTRAST, timeout=30)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.theme == HIGH_CONTRAST, timeout=30)
        assert not isinstance(app.screen, CommandPalette)


BROKEN = {
    "not-toml.toml": 'name = "x"\nprimary = ',
    "bad-colour.toml": 'name = "bad-colour"\nprimary = "not-a-colour"\n',
    "unknown-key.toml": 'name = "unknown-key"\nprimary = "#112233"\nprimery = "#112233"\n',
    "no-name.toml": 'primary = "#112233"\n',
    "bad-variable.toml": 'name = "bad-variable"\nprimary = "#112233"\n[variables]\nmetric-good = "greenish"\n',
    "bad-dark.toml": 'name = "bad-dark"\nprimary = "#112233"\ndark = "yes"\n',
}
REASONS = {
    "not-toml.toml": "not valid TOML",
    "bad-colour.toml": "primary is not a colour",
    "unknown-key.toml": "unknown key(s) primery",
    "no-name.toml": "'name' is required",
    "bad-variable.toml": "variable 'metric-good' is not a colour",
    "bad-dark.toml": "dark must be true or false",
}


async def test_broken_user_themes_are_warnings_naming_the_file(user_dir) -> None:
    for name, text in BROKEN.items():
        (user_dir / name).write_text(text)
    (user_dir / "mine.toml").write_text(
        'name = "mine"\nprimary = "#FF8800"\nbackground = "#101010"\n[variables]\nmetric-good = "#00FF00 80%"\n')
    (user_dir / "notes.txt").write_text("not a theme file: ignored")
    app = ThemedApp(user_dir)
    warnings = app.theme_warnings
    assert len(warnings) == len(BROKEN)
    for name, reason in REASONS.items():
        [warning] = [w for w in warnings if name in w]
        assert str(user_dir / name) in warning and reason in warning, warning
    async with app.run_test(size=SMALL) as pilot:  # the app runs, and the good user theme works
        assert "mine" in app.available_themes and "bad-colour" not in app.available_themes
        app.theme = "mine"
        await pilot.pause()
        assert app.query_one("#good").styles.background == Color.parse("#101010")


def test_a_user_theme_replaces_a_shipped_one_of_the_same_name(user_dir) -> None:
    (user_dir / "dark.toml").write_text(f'name = "{DARK}"\nprimary = "#FF0000"\n')
    themes, warnings = load_themes(user_dir)
    assert warnings == [] and {t.name: t for t in themes}[DARK].primary == "#FF0000"


def test_shipped_files_are_valid_one_by_one() -> None:
    folder = shipped_themes_dir()
    assert sorted(p.name for p in folder.glob("*.toml")) == ["dark.toml", "high-contrast.toml", "light.toml"]
    for path in folder.glob("*.toml"):
        load_theme_file(path)


# -- the screens, at 80x24 in each shipped theme -------------------------------------------------

def visible(app: App, widget) -> bool:
    region = widget.region
    screen = app.screen.region
    return region.area > 0 and screen.contains_region(region)


@pytest.mark.parametrize("theme", sorted(SHIPPED))
async def test_settings_screen_fits_validates_and_returns_settings(user_dir, theme) -> None:
    app = ThemedApp(user_dir)
    results: list = []
    async with app.run_test(size=SMALL) as pilot:
        app.theme = theme
        app.push_screen(SettingsScreen(Settings()), results.append)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        for key in FIELDS:  # every setting on screen at once, at 80x24
            assert visible(app, screen.query_one(f"#setting-{key}")), key
        assert visible(app, screen.query_one("#settings-save"))
        # named values are shown by their words, and saved as the numbers they stand for
        assert screen.query_one("#setting-gpu_layers", Input).value == "auto"
        assert screen.query_one("#setting-seed", Input).value == "random"
        screen.query_one("#setting-context", Input).value = "5"
        screen.query_one("#setting-temperature", Input).value = "0.3"
        screen.query_one("#setting-top_p", Input).value = "3"
        screen.query_one("#setting-model", Input).value = "/models/x.gguf"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is screen and results == []  # refused: still editing
        errors = str(screen.query_one("#settings-errors", Static).render())
        assert "'context' must be an integer from 128 to 1073741824 (got 5)" in errors
        assert "'top_p' must be a number from 0.0 to 1.0" in errors
        assert screen.query_one("#setting-context").has_class("-rejected")
        assert screen.focused is screen.query_one("#setting-context")
        screen.query_one("#setting-context", Input).value = "4096"
        screen.query_one("#setting-top_p", Input).value = "0.8"
        screen.query_one("#setting-save_conversations", Switch).value = False
        await pilot.pause()
        assert not screen.query_one("#setting-context").has_class("-rejected")  # cleared by the edit
        await pilot.press("ctrl+s")
        await pilot.pause()
    [saved] = results
    assert saved == dataclasses.replace(Settings(), context=4096, temperature=0.3, top_p=0.8,
                                        model="/models/x.gguf", save_conversations=False)


async def test_settings_screen_previews_the_theme_and_esc_puts_it_back(user_dir) -> None:
    app = ThemedApp(user_dir)
    results: list = []
    async with app.run_test(size=SMALL) as pilot:
        app.theme = DARK
        app.push_screen(SettingsScreen(Settings(theme=DARK)), results.append)
        await pilot.pause()
        options = app.screen.query_one("#setting-theme", Select)
        options.value = LIGHT
        await pilot.pause()
        assert app.theme == LIGHT  # previewed
        await pilot.press("escape")
        await pilot.pause()
        assert results == [None] and app.theme == DARK


async def test_settings_screen_enter_in_a_field_or_the_button_saves(user_dir) -> None:
    app = ThemedApp(user_dir)
    results: list = []
    async with app.run_test(size=SMALL) as pilot:
        app.push_screen(SettingsScreen(Settings()), results.append)
        await pilot.pause()
        await pilot.press("tab")  # model -> context
        assert app.screen.focused is app.screen.query_one("#setting-context")
        await pilot.press("end", *["backspace"] * 4, *"8192", "enter")
        await pilot.pause()
        app.push_screen(SettingsScreen(Settings(seed=3)), results.append)
        await pilot.pause()
        await pilot.click("#settings-save")
        await pilot.pause()
    assert results == [Settings(context=8192), Settings(seed=3)]


def make_store(path: Path) -> tuple[ConversationStore, list[int]]:
    store = ConversationStore(path)
    model = ModelInfo("SmolLM2-135M-Instruct", "/m.gguf", "llama_cpp", "Q4_1")
    ids = []
    for i in range(3):
        cid = store.create()
        store.append_turn(cid, Turn("user", f"Question {i} about lighthouses"))
        store.append_turn(cid, Turn("assistant", f"Answer {i}", ReplyStats(wall_s=1.0, completion_tokens=3)),
                          model=model)
        ids.append(cid)
    return store, ids


@pytest.mark.parametrize("theme", sorted(SHIPPED))
async def test_conversations_screen_lists_renames_exports_deletes_opens(tmp_path, user_dir, theme) -> None:
    store, ids = make_store(tmp_path / "c.db")
    app = ThemedApp(user_dir)
    results: list = []
    async with app.run_test(size=SMALL) as pilot:
        app.theme = theme
        app.push_screen(ConversationsScreen(store, export_dir=tmp_path / "exports"), results.append)
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(DataTable)
        assert table.row_count == 3 and screen.current == ids[-1]  # newest first
        assert table.virtual_size.width <= table.size.width  # no sideways scrolling at 80 columns
        await pilot.press("r")
        rename = screen.query_one("#conv-rename", Input)
        assert rename.has_focus and rename.value == "Question 2 about lighthouses"
        rename.value = ""
        await pilot.press(*"Lamps and mirrors", "enter")  # r, d, m, j typed here are text, not keys
        await pilot.pause()
        assert store.load(ids[-1]).title == "Lamps and mirrors"
        assert table.has_focus
        await pilot.press("m", "j")
        await pilot.pause()
        names = sorted(p.name for p in (tmp_path / "exports").iterdir())
        assert names == [f"lamps-and-mirrors-{ids[-1]}.json", f"lamps-and-mirrors-{ids[-1]}.md"]
        assert "Answer 2" in (tmp_path / "exports" / names[1]).read_text()
        await pilot.press("d")
        await pilot.pause()
        assert len(store.list()) == 3  # the first d only asks
        await pilot.press("d")
        await pilot.pause()
        assert [c.id for c in store.list()] == ids[1::-1]
        assert table.row_count == 2
        await pilot.press("down", "enter")
        await pilot.pause()
    assert results == [ids[0]]
    store.close()


async def test_conversations_screen_escape_returns_none(tmp_path, user_dir) -> None:
    store, _ = make_store(tmp_path / "c.db")
    app = ThemedApp(user_dir)
    results: list = []
    async with app.run_test(size=SMALL) as pilot:
        app.push_screen(ConversationsScreen(store, export_dir=tmp_path), results.append)
        await pilot.pause()
        await pilot.press("r", "escape")  # the first Esc only leaves the rename box
        await pilot.pause()
        assert isinstance(app.screen, ConversationsScreen)
        await pilot.press("escape")
        await pilot.pause()
    assert results == [None]
    store.close()


@pytest.mark.parametrize("theme", sorted(SHIPPED))
async def test_help_screen_lists_the_bindings(user_dir, theme) -> None:
    app = ThemedApp(user_dir)
    results: list = []
    async with app.run_test(size=SMALL) as pilot:
        app.theme = theme
        pairs = app_bindings(app)
        assert ("^n", "New chat") in pairs and ("^o", "Model") in pairs
        app.push_screen(HelpScreen([*pairs, ("Esc", "Stop the reply")]), results.append)
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        rows = [tuple(map(str, table.get_row_at(i))) for i in range(table.row_count)]
        assert ("Esc", "Stop the reply") in rows and ("^n", "New chat") in rows
        assert visible(app, table)
        await pilot.press("question_mark")  # ? closes it as well as Esc
        await pilot.pause()
    assert results == [None]
