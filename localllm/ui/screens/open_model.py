"""The models screen: the library (embedded model, HF cache, files added by path, Ollama's and LM
Studio's stores, the settings' model folders, with their source), servers found
running on this machine (only loopback is asked), a path or URL, and downloads from the Hub with
progress and cancel. Picking one loads it; the conversation is kept across the switch."""

from __future__ import annotations

import threading

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, ProgressBar
from textual.widgets.option_list import Option, OptionDoesNotExist

from localllm.ui.plain import plain

DEFAULT_MODEL = ""  # the value that stands for the embedded model (the app's default)


def store_label(e) -> str:
    """An other tool's model in a list: name, format, quant, size, where it is found, serving now."""
    from localllm.hub.repos import human_size

    where = " + ".join(s.tool if i == 0 else f"{s.tool} {s.name}" for i, s in enumerate(e.sources))
    label = f"{e.name} · {e.format} {e.quant} · {human_size(e.size_bytes)} · {where}"
    return label + (" · serving now" if e.serving else "")


class OpenModelScreen(ModalScreen[str | None]):
    """Dismisses with a path, a server URL (`URL#model-id` for one of its models), DEFAULT_MODEL, or None."""

    BINDINGS = [Binding("escape", "cancel", "Close / cancel download"),
                Binding("ctrl+s", "save_server", "Save server URL")]

    class EndpointSaved(Message):
        """The user asked to keep the typed server URL in the settings' saved endpoints."""

        def __init__(self, url: str) -> None:
            super().__init__()
            self.url = url

    def __init__(self, endpoints: list[str] | None = None, key_env: str = "",
                 pull: tuple[str, str | None] | None = None) -> None:
        """`pull`: (repo, file or None) to start downloading at once (a pick of the hardware screen)."""
        super().__init__()
        self._pull = pull
        self._download_cancel: threading.Event | None = None
        self._endpoints = list(endpoints or [])
        self._key_env = key_env

    def compose(self) -> ComposeResult:
        with Vertical(id="open-box"):
            yield Label("A GGUF file, a checkpoint folder or a server URL. Enter loads (empty: the embedded "
                        "model), Ctrl+S saves the URL to the servers list, Esc closes.")
            yield Input(placeholder="/path/model.gguf, /path/checkpoint or http://127.0.0.1:8080",
                        id="open-path")
            yield Label("Download from the Hugging Face Hub: REPO [QUANT], e.g. "
                        "bartowski/Qwen2.5-0.5B-Instruct-GGUF Q4_K_M", markup=False)
            yield Input(placeholder="repo id and optional quant", id="pull-repo")
            with Horizontal(id="pull-row"):
                yield ProgressBar(id="pull-bar", show_eta=False)
                yield Label("", id="pull-status", markup=False)
            yield Label("Library and servers (servers are listed as they answer):")
            yield OptionList(Option("The embedded model: SmolLM2-135M-Instruct (Q4_1)", id="embedded"),
                             id="open-choices")

    def on_mount(self) -> None:
        self.query_one("#pull-row").display = False
        self.query_one("#open-path", Input).focus()
        self.list_library()
        self.find_servers()
        for url in self._endpoints:
            self.ask_endpoint(url)
        if self._pull is not None:
            repo, filename = self._pull
            self.query_one("#pull-repo", Input).value = repo
            self.download(repo, None, filename)

    @work(thread=True, exit_on_error=False, group="library")
    def list_library(self) -> None:
        from localllm.hub.repos import human_size
        from localllm.models.library import cache_entries

        try:
            entries = cache_entries()
        except Exception as exc:  # an unreadable cache must not break the screen
            self.app.call_from_thread(self.notify, f"Cannot read the HF cache: {exc}", severity="warning")
            return
        for e in entries:
            if e.usable:
                label = f"{e.name} · {e.format} {e.quant} · {human_size(e.size_bytes)} · {e.source}"
                self.app.call_from_thread(self._add_choice, label, e.path)
        self.list_stores(entries)

    def list_stores(self, cached: list) -> None:
        """Other tools' models, each picked by its ref (ollama:NAME, lmstudio:PUB/MODEL/FILE): a copy of
        the embedded model or of one listed from the HF cache is not listed twice; what Ollama or LM
        Studio has loaded now says so."""
        from localllm.models.library import embedded_entry, other_tools_models

        try:
            entries = other_tools_models([embedded_entry(), *cached])
        except Exception as exc:  # a store that cannot be read must not break the screen
            self.app.call_from_thread(self.notify, f"Cannot read the model stores: {exc}", severity="warning")
            return
        for e in entries:
            self.app.call_from_thread(self._add_choice, store_label(e), e.sources[0].ref)

    @work(thread=True, exit_on_error=False, group="servers")
    def find_servers(self) -> None:
        from localllm.models.endpoints import discover

        for server in discover():
            self._add_server_models(server.url, f"{server.kind} at {server.url}", server.models)

    @work(thread=True, exit_on_error=False, group="endpoints")
    def ask_endpoint(self, url: str) -> None:
        """A saved server is asked for its models (saving it was the user's permission to contact it)."""
        from localllm.models.endpoints import list_models

        try:
            models = list_models(url, key_env=self._key_env)
        except Exception as exc:  # refused, timed out, 401, not OpenAI-compatible: say which, keep going
            reason = getattr(exc, "reason", None) or exc
            self.app.call_from_thread(self._add_choice, f"saved server {url}: not answering ({reason})",
                                      url, True)
            return
        self._add_server_models(url, f"saved server {url}", models)

    def _add_server_models(self, url: str, where: str, models: list[str]) -> None:
        from localllm.models.endpoints import with_model

        for model in models:
            self.app.call_from_thread(self._add_choice, f"{model} · {where}", with_model(url, model))
        if not models:
            self.app.call_from_thread(self._add_choice, f"{where}: lists no models", url, True)

    def _add_choice(self, label: str, value: str, disabled: bool = False) -> None:
        options = self.query_one(OptionList)
        try:
            options.get_option(value)
            return  # listed already
        except OptionDoesNotExist:
            options.add_option(Option(plain(label), id=value, disabled=disabled))

    def action_save_server(self) -> None:
        from localllm.config.settings import SettingsError, check_value

        text = self.query_one("#open-path", Input).value.strip()
        try:
            check_value("endpoints", [text])
        except SettingsError:
            self.notify(f"Type a server URL such as http://127.0.0.1:8080 to save it (got {text!r}).",
                        severity="warning")
            return
        self.post_message(self.EndpointSaved(text))
        if text not in self._endpoints:
            self._endpoints.append(text)
            self.ask_endpoint(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "pull-repo":
            words = event.value.split()
            if words and self._download_cancel is None:
                self.download(words[0], words[1] if len(words) > 1 else None)
            return
        self.dismiss(event.value.strip())

    @work(thread=True, exclusive=True, group="download", exit_on_error=False)
    def download(self, repo: str, quant: str | None, filename: str | None = None) -> None:
        from localllm.errors import LocalLLMError
        from localllm.hub.download import DownloadJob
        from localllm.hub.repos import HubConfig, human_size, list_repo, select_files

        cancel = self._download_cancel = threading.Event()
        call = self.app.call_from_thread
        call(self._show_progress, 0, None, f"asking the Hub about {repo}…")

        def progress(p) -> None:
            rate = f"{human_size(p.rate)}/s" if p.rate else ""
            eta = f"ETA {int(p.eta_s)} s" if p.eta_s is not None else ""
            call(self._show_progress, p.done, p.total,
                 f"{p.filename} {human_size(p.done)} / {human_size(p.total)} {rate} {eta}".strip())

        try:
            cfg = HubConfig.from_env()
            listing = list_repo(repo, None, cfg)
            selection = select_files(listing, quant=quant, filename=filename)
            result = DownloadJob(listing, selection, cfg, progress=progress, cancel=cancel).run()
        except LocalLLMError as exc:  # each fault has its own message; cancel keeps the partial file
            call(self._show_progress, 0, None, str(exc))
            return
        finally:
            self._download_cancel = None
        call(self.dismiss, str(result.model_path))

    def _show_progress(self, done: int, total: int | None, text: str) -> None:
        self.query_one("#pull-row").display = True
        bar = self.query_one("#pull-bar", ProgressBar)
        bar.update(total=total, progress=done)
        self.query_one("#pull-status", Label).update(text)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(DEFAULT_MODEL if event.option.id == "embedded" else event.option.id)

    def action_cancel(self) -> None:
        if self._download_cancel is not None:
            self._download_cancel.set()  # the job stops at its next chunk and says so
            return
        self.dismiss(None)
