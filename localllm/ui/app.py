"""The localllm TUI: the chat screen (screens/chat_screen.py) and the routes from it: the key bindings,
the screens they open and what their choices do to the chat, the command palette, the settings and the
themes. The chat's session and recorder are made here, so every screen is handed the same ones."""

from __future__ import annotations

from collections.abc import Iterable

from textual.actions import SkipAction
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen

from localllm.chat.conversations import ConversationStore
from localllm.chat.recorder import Recorder
from localllm.chat.session import ChatSession
from localllm.config import LoadOptions, SamplingParams
from localllm.config.settings import (
    MODEL_KNOBS,
    Settings,
    load_settings_lenient,
    save_settings,
    to_load_options,
    to_sampling,
)
from localllm.errors import LocalLLMError
from localllm.models.sampling_defaults import SamplingRequest
from localllm.ui.commands import COMMANDS
from localllm.ui.screens.bench_screen import BenchScreen
from localllm.ui.screens.chat_screen import ChatScreen
from localllm.ui.screens.compare_screen import CompareScreen
from localllm.ui.screens.conversations_screen import ConversationsScreen
from localllm.ui.screens.hardware_screen import HardwareScreen, download_target
from localllm.ui.screens.help_screen import HelpScreen, app_bindings
from localllm.ui.screens.log_screen import LogScreen
from localllm.ui.screens.open_model import OpenModelScreen
from localllm.ui.screens.quantize_screen import QuantizeScreen
from localllm.ui.screens.settings_screen import SettingsScreen
from localllm.ui.themes import DARK, VARIABLE_DEFAULTS, register_themes
from localllm.ui.widgets.metrics_panel import MetricsPanel


class LocalLLMApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "localllm"
    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+y", "copy_reply", "Copy"),
        Binding("ctrl+n", "new_chat", "New chat"),
        # priority: the prompt Input has focus and binds ctrl+e (end of line); elsewhere it still does
        Binding("ctrl+e", "compare", "Compare", priority=True),
        Binding("ctrl+o", "open_model", "Model"),
        Binding("ctrl+g", "show_log", "Log"),
        Binding("f1", "help", "Help"),
        Binding("f2", "settings", "Settings"),
        Binding("f3", "history", "History"),
        Binding("f4", "hardware", "Machine"),
        Binding("f5", "bench", "Bench"),
        Binding("f6", "quantize", "Quantize"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, model_path: str | None = None, load_options: LoadOptions | None = None,
                 sampling: SamplingParams | None = None, system_prompt: str | None = None,
                 settings: Settings | None = None, sampling_request: SamplingRequest | None = None) -> None:
        """Explicit arguments win over the saved settings (the CLI passes what was typed)."""
        super().__init__()
        self.warnings: list[str] = []
        if settings is None:
            settings, self.warnings = load_settings_lenient()
        self.settings = settings
        if sampling is None and sampling_request is None:  # each model's own defaults, under the settings
            sampling_request = SamplingRequest(settings=settings, base=to_sampling(settings))
        if sampling_request is not None and system_prompt is not None:  # typed: wins over the model's
            sampling_request.run["system_prompt"] = system_prompt
        self.session = ChatSession(sampling=sampling or (sampling_request.base if sampling_request
                                                         else to_sampling(settings)),
                                   system_prompt=settings.system_prompt if system_prompt is None
                                   else system_prompt, calibrate=True,
                                   sampling_request=None if sampling else sampling_request)
        self.recorder = Recorder(self._open_store() if settings.save_conversations else None)
        self.chat = ChatScreen(self.session, self.recorder, model_path or settings.model or None,
                               load_options or to_load_options(settings))
        self.warnings += register_themes(self)
        self.theme = settings.theme if settings.theme in self.available_themes else DARK

    def get_default_screen(self) -> Screen:
        return self.chat

    @property
    def generating(self) -> bool:
        """A reply is streaming: what would time two models at once or change the model under it waits."""
        return self.chat.generating

    def _open_store(self) -> ConversationStore | None:
        try:
            return ConversationStore()
        except LocalLLMError as exc:
            self.warnings.append(f"Conversations will not be saved: {exc}")
            return None

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification is plain text (localllm.ui.plain): they carry paths, model names and error
        messages. Screens' notify() comes here too, with markup=True passed along, so it is not read."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return VARIABLE_DEFAULTS  # the app's own colours, for Textual's built-in themes too

    def watch_theme(self, name: str) -> None:
        """Remember a theme picked anywhere (command palette, settings screen)."""
        settings = getattr(self, "settings", None)
        if settings is not None and settings.theme != name:
            settings.theme = name
            self._save_settings()

    def _save_settings(self) -> None:
        try:
            save_settings(self.settings)
        except (LocalLLMError, OSError) as exc:
            self.notify(f"Settings not saved: {exc}", severity="warning")

    def on_mount(self) -> None:
        for warning in self.warnings:
            self.notify(warning, severity="warning", timeout=10)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, method in COMMANDS:
            yield SystemCommand(title, help_text, getattr(self, method))

    # -- the chat's own actions, bound here so that every screen's footer and Esc reach them ------
    def action_stop(self) -> None:
        self.chat.action_stop()

    async def action_regenerate(self) -> None:
        await self.chat.action_regenerate()

    def action_copy_reply(self) -> None:
        self.chat.action_copy_reply()

    def action_export_conversation(self) -> None:
        self.chat.action_export()

    async def action_new_chat(self) -> None:
        await self.chat.action_new_chat()

    # -- routes: the screens, and what their choices do to the chat ----------------------------
    def action_open_model(self) -> None:
        if not self.chat.still_loading():
            self._open_models()

    def action_compare(self) -> None:
        if self.screen is not self.screen_stack[0]:
            raise SkipAction()  # another screen's Input keeps ctrl+e (end of line)
        self.open_compare()

    def open_compare(self) -> None:
        if self.generating:  # two models at once would make both timings wrong
            self.notify("Wait for the reply to finish (or Esc) before comparing.")
            return
        self.push_screen(CompareScreen(self.chat.draft, self.session, self.recorder, self.chat.load_options))

    def _open_models(self, pull: tuple[str, str | None] | None = None,
                     options: LoadOptions | None = None) -> None:
        def chosen(path: str | None) -> None:
            if path is not None:
                self.chat.reload(path or None, options)

        self.push_screen(OpenModelScreen(self.settings.endpoints, self.settings.api_key_env, pull), chosen)

    def on_open_model_screen_endpoint_saved(self, message: OpenModelScreen.EndpointSaved) -> None:
        if message.url in self.settings.endpoints:
            return
        self.settings.endpoints = [*self.settings.endpoints, message.url]
        self._save_settings()
        self.notify(f"Saved {message.url} to the servers list (settings: endpoints).")

    def action_hardware(self) -> None:
        def picked(pick) -> None:
            if pick is None or self.generating or self.chat.still_loading():
                return
            placed = self.chat.placed(pick)
            if pick.source.startswith("embedded"):  # nothing to download: chat with it now
                self.chat.reload(None, placed)
                return
            if pick.on_disk and pick.ref:  # already here (Ollama's store, LM Studio's ...): run it in place
                self.chat.reload(pick.ref, placed)
                return
            target = download_target(pick)
            if target is not None:  # the download runs there, with progress and cancel
                self._open_models(pull=target, options=placed)

        self.push_screen(HardwareScreen(), picked)

    def action_bench(self) -> None:
        self.push_screen(BenchScreen(current=self.session.model_ref))

    def action_quantize(self) -> None:
        def made(path: str | None) -> None:
            if path:
                self.chat.reload(path)

        self.push_screen(QuantizeScreen(), made)

    def action_show_log(self) -> None:
        self.push_screen(LogScreen(self.session.log_path))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(app_bindings(self) + [("Ctrl+P", "command palette: every action, themes")]))

    def action_settings(self) -> None:
        def saved(new: Settings | None) -> None:
            if new is None:
                return
            changed = {k: getattr(new, k) for k in MODEL_KNOBS if getattr(new, k) != getattr(self.settings, k)}
            self.settings = new
            self._save_settings()
            # the values changed in the box win for this run; the model's own defaults fill the rest
            self.session.resample(changed, new, base=to_sampling(new, self.session.sampling))
            self.chat.query_one(MetricsPanel).show_sampling(self.session.resolved_sampling)
            self.chat.load_options = to_load_options(new, self.chat.load_options)  # at the next model load
            self.notify("Settings saved. Context and threads apply at the next model load.")

        chosen = self.session.resolved_sampling
        self.push_screen(SettingsScreen(self.settings, themes=sorted(self.available_themes),
                                        model_sampling=chosen.to_dict() if chosen else None), saved)

    def action_history(self) -> None:
        if self.recorder.store is None:
            self.notify("Conversations are not being saved (see Settings).")
            return

        async def chosen(conversation_id: int | None) -> None:
            if conversation_id is None or self.generating:
                return
            try:
                self.recorder.open(conversation_id, self.session)
            except LocalLLMError as exc:
                self.notify(str(exc), severity="error")
                return
            await self.chat.show_conversation()

        self.push_screen(ConversationsScreen(self.recorder.store), chosen)

    async def on_unmount(self) -> None:
        self.session.close()
        if self.recorder.store is not None:
            self.recorder.store.close()
