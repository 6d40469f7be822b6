"""The localllm TUI: wires the chat session, the widgets and the thread workers together."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual import on, work
from textual.actions import SkipAction
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Input

from localllm.chat.conversations import ConversationStore
from localllm.chat.recorder import Recorder
from localllm.chat.session import ChatSession, KernelNotice, ReplyDone, TextDelta, TrimNotice
from localllm.config import LoadOptions, SamplingParams, default_threads
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
from localllm.runtime.metrics import ProcessSampler
from localllm.ui.messages import (
    ModelLoaded,
    ModelLoadFailed,
    ReplyDelta,
    ReplyFailed,
    ReplyFinished,
    ReplyNotice,
)
from localllm.ui.pacing import RepaintPacer
from localllm.ui.screens.bench_screen import BenchScreen
from localllm.ui.screens.compare_screen import CompareScreen
from localllm.ui.screens.conversations_screen import ConversationsScreen
from localllm.ui.screens.hardware_screen import HardwareScreen, download_target
from localllm.ui.screens.help_screen import HelpScreen, app_bindings
from localllm.ui.screens.log_screen import LogScreen
from localllm.ui.screens.open_model import OpenModelScreen
from localllm.ui.screens.quantize_screen import QuantizeScreen
from localllm.ui.screens.settings_screen import SettingsScreen
from localllm.ui.themes import DARK, VARIABLE_DEFAULTS, register_themes
from localllm.ui.widgets.chat_log import AssistantMessage, ChatLog
from localllm.ui.widgets.metrics_panel import MetricsPanel
from localllm.ui.widgets.status_bar import StatusBar
from localllm.ui.widgets.wrapping_footer import WrappingFooter

if TYPE_CHECKING:
    from localllm.backends.base import ModelInfo
    from localllm.models.catalog import ModelSpec

PANEL_EVERY_S = 0.5
IDLE_TICK_S = 1.0


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
        self.session = ChatSession(sampling=sampling or (sampling_request.base if sampling_request
                                                         else to_sampling(settings)),
                                   system_prompt=settings.system_prompt if system_prompt is None
                                   else system_prompt, sampling_request=None if sampling else sampling_request)
        self.model_path = model_path or settings.model or None
        self.load_options = load_options or to_load_options(settings)
        self.recorder = Recorder(self._open_store() if settings.save_conversations else None)
        self.warnings += register_themes(self)
        self.theme = settings.theme if settings.theme in self.available_themes else DARK
        self.generating = False
        self.reply: AssistantMessage | None = None
        self._sampler: ProcessSampler | None = None
        self._estimated: tuple[ModelSpec, ModelInfo] | None = None  # (ModelSpec, ModelInfo) of the loaded GGUF, for the memory estimate
        self._rate_mark: tuple[float, int] | None = None
        self._panel_at = 0.0
        self._binding_warned = False
        self.pacer = RepaintPacer()

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar()
        with Horizontal(id="main"):
            yield ChatLog()
            yield MetricsPanel()
        prompt = Input(placeholder="Type a message, Enter to send", id="prompt", disabled=True)
        prompt.cursor_blink = False  # a blinking cursor repaints twice a second: most of the idle TUI's CPU
        yield prompt
        yield WrappingFooter()

    def _open_store(self) -> ConversationStore | None:
        try:
            return ConversationStore()
        except LocalLLMError as exc:
            self.warnings.append(f"Conversations will not be saved: {exc}")
            return None

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
        self.set_interval(IDLE_TICK_S, self._idle_tick)
        self.load_model(self.model_path)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Stop reply", "Stop the reply being generated (Esc)", self.action_stop)
        yield SystemCommand("Regenerate", "Answer the last message again (Ctrl+R)", self.action_regenerate)
        yield SystemCommand("Copy reply", "Copy the last reply to the clipboard (Ctrl+Y)",
                            self.action_copy_reply)
        yield SystemCommand("New chat", "Start a new conversation (Ctrl+N)", self.action_new_chat)
        yield SystemCommand("Compare models", "The prompt being typed, on several models side by side (Ctrl+E)",
                            self.open_compare)
        yield SystemCommand("Load model", "Load a GGUF file; the conversation is kept (Ctrl+O)",
                            self.action_open_model)
        yield SystemCommand("Worker log", "Show the model worker's log (Ctrl+G)", self.action_show_log)
        yield SystemCommand("Keys", "Every key binding (F1)", self.action_help)
        yield SystemCommand("Settings", "Model, context, sampling, theme defaults (F2)", self.action_settings)
        yield SystemCommand("History", "Saved conversations: open, rename, delete, export (F3)",
                            self.action_history)
        yield SystemCommand("Timing runs", "Side-by-side timing of models and quants, with charts (F5)",
                            self.action_bench)
        yield SystemCommand("Quantize", "Make a GGUF quant, a full-precision checkpoint or a GPTQ model (F6)",
                            self.action_quantize)
        yield SystemCommand("Hardware and recommendations",
                            "This machine and the models that fit it; Enter downloads a pick (F4)",
                            self.action_hardware)

    # -- model loading -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load_model(self, path: str | None, options: LoadOptions | None = None) -> None:
        """`options`: this load only (a Machine-screen pick's placement); else the app's."""
        self.call_from_thread(self._set_state, "loading model…")
        self.call_from_thread(self._show_estimate, None)  # the last model's figure is not this one's
        try:
            if not path:
                from localllm.models.embedded import EMBEDDED

                path = EMBEDDED  # ModelRef (in the session) finds its file
            self.session.notices.clear()
            info = self.session.load(path, options or self.load_options,  # the path says which backend
                                     on_progress=self._load_progress)
        except LocalLLMError as exc:
            self.post_message(ModelLoadFailed(str(exc)))
            return
        except Exception as exc:  # a bug or an odd path (~nosuchuser/x.gguf): said, never "loading" forever
            self.post_message(ModelLoadFailed(f"Could not load {path}: {type(exc).__name__}: {exc}. "
                                              "Check the path, or pick another model (Ctrl+O)."))
            return
        self.post_message(ModelLoaded(info))
        for notice in self.session.notices:
            self.call_from_thread(self.notify, notice, severity="warning", timeout=15)
        if info.backend == "llama_cpp":  # a server's GPUs are the server's business
            self._check_binding()
        self._estimated = None
        if info.backend == "llama_cpp":
            from localllm.models.catalog import ModelSpec

            try:  # the header is read once per load; each reply re-estimates for its own context fill
                self._estimated = (ModelSpec.from_gguf(info.path), info)
            except Exception:  # an estimate is information; a file the estimator cannot read still chats
                return
            self.estimate_memory(fill=1)

    def _load_progress(self, fraction: float) -> None:
        """In the load's thread: llama.cpp's progress through the file, in the status bar."""
        try:
            self.call_from_thread(self._set_state, f"loading model… {fraction:.0%} (Esc cancels)")
        except RuntimeError:  # the app is closing
            pass

    def _check_binding(self) -> None:
        """A GPU here that the installed llama-cpp-python cannot use: say so in the status bar, once with
        the exact fix (the same check as `localllm doctor`). Runs in the load worker's thread."""
        from localllm.machine import hardware
        from localllm.runtime import binding
        from localllm.runtime.doctor import gpu_binding_mismatch

        caps = binding.cached()
        if caps is None or self._binding_warned:
            return
        mismatch = gpu_binding_mismatch(hardware.probe(), caps)
        if mismatch is None:
            return
        self._binding_warned = True
        self.call_from_thread(setattr, self.query_one(StatusBar), "warning",
                              "GPU unused: CPU-only llama.cpp (localllm doctor)")
        self.call_from_thread(self.notify, f"{mismatch.summary}. Fix: {mismatch.fix}", severity="warning",
                              timeout=30)

    @work(thread=True, exclusive=True, group="estimate", exit_on_error=False)
    def estimate_memory(self, fill: int, measured_mib: float | None = None, decode_tok_s: float | None = None,
                        decode_fill: int | None = None) -> None:
        """The estimator's RSS figure for this model at this fill, shown beside the measured peak: every
        load and every reply checks the estimates that recommendations are made from. After a reply,
        the uncalibrated prediction and the measured peak (and decode speed) are kept to calibrate later
        estimates."""
        from localllm.machine.bandwidth import cached_bandwidth
        from localllm.machine.calibration import record_measurement
        from localllm.machine.estimate import estimate_memory, record_decode

        if self._estimated is None:
            return
        spec, info = self._estimated
        flags = None if info.extra.get("extra_bufts", True) else ()  # off: nothing is repacked
        try:
            est = estimate_memory(spec, "gguf", spec.gguf_quant, info.n_ctx, gpu_layers=info.n_gpu_layers,
                                  fill=max(1, fill), cpu_flags=flags)
            if measured_mib:
                raw = estimate_memory(spec, "gguf", spec.gguf_quant, info.n_ctx, gpu_layers=info.n_gpu_layers,
                                      fill=max(1, fill), calibrate=False, cpu_flags=flags)
                record_measurement(model=spec.name, fmt="gguf", quant=spec.gguf_quant, device="cpu",
                                   context=info.n_ctx, predicted_ram_bytes=raw.rss_bytes,
                                   measured_ram_bytes=int(measured_mib * 2**20))
                gb_s = cached_bandwidth()
                if decode_tok_s and gb_s and info.n_gpu_layers == 0:  # GPU bandwidth is not cached: CPU only
                    record_decode(spec, raw, decode_tok_s, gb_s, fill=decode_fill)
        except (LocalLLMError, OSError):  # information only: a full disk must not break the chat
            return
        self.call_from_thread(self._show_estimate, est.rss_bytes / 2**20)

    def _show_estimate(self, mib: float | None) -> None:
        panel = self.query_one(MetricsPanel)
        panel.estimate_mib = mib
        panel.refresh()

    def _set_state(self, state: str) -> None:
        self.query_one(StatusBar).state = state

    def on_model_loaded(self, message: ModelLoaded) -> None:
        self.query_one(StatusBar).model = message.info
        panel = self.query_one(MetricsPanel)
        plan = self.session.plan
        vram = plan.estimate.vram_bytes if plan is not None else 0
        panel.vram_plan_mib = vram / 2**20 if vram else None
        panel.rss_history.clear()  # a new process: the old model's peak is not this one's
        panel.rss = None
        panel.load_s = message.info.load_s
        panel.show_sampling(self.session.resolved_sampling)
        self.pacer.spare_core = (message.info.backend == "remote"
                                 or default_threads() - message.info.n_threads >= 1)
        self._set_state("ready")
        pid = self.session.worker_pid
        self._sampler = ProcessSampler(pid) if pid else None
        prompt = self.query_one("#prompt", Input)
        prompt.disabled = False
        prompt.focus()

    async def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self._set_state("no model loaded (Ctrl+O to load one)")
        await self.query_one(ChatLog).add_error(message.error)
        self.query_one("#prompt", Input).disabled = self.session.model is None

    # -- chatting ------------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    async def submit(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text or self.generating:
            return  # empty input is ignored; one reply at a time
        event.input.value = ""
        await self.query_one(ChatLog).add_user(text)

        def start():
            events = self.session.send(text)  # raises here if refused: nothing is saved
            self._warn(self.recorder.user_turn(self.session))
            return events

        await self._start_reply(start)

    def _warn(self, warning: str | None) -> None:
        if warning:
            self.call_from_thread(self.notify, warning, severity="warning")

    async def _start_reply(self, start) -> None:
        model = self.session.model
        self.reply = await self.query_one(ChatLog).start_reply(model.name if model else "model")
        self.generating = True
        self._rate_mark = None
        self._panel_at = 0.0
        self.pacer.reset()
        self.query_one("#prompt", Input).cursor_blink = False  # a blink is a repaint
        self._set_state("generating")
        # Paint the new messages first, so that repaint does not land inside the decode.
        self.call_after_refresh(self.generate, start)

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def generate(self, start) -> None:
        """Runs the session's stream; text is batched so the UI does not steal decode time."""
        buffer: list[str] = []
        last = time.perf_counter()
        got_text = False
        try:
            for event in start():
                if isinstance(event, TextDelta):
                    buffer.append(event.text)
                    now = time.perf_counter()
                    if now - last >= self.pacer.interval:
                        self.post_message(ReplyDelta("".join(buffer)))
                        buffer.clear()
                        got_text = True
                        last = now
                elif isinstance(event, TrimNotice | KernelNotice):
                    self.post_message(ReplyNotice(str(event)))
                elif isinstance(event, ReplyDone):
                    if buffer:
                        self.post_message(ReplyDelta("".join(buffer)))
                    self.post_message(ReplyFinished(event.stats, event.turn.status))
        except Exception as exc:  # LocalLLMError says what to do; anything else is a bug, said as one
            if buffer:
                self.post_message(ReplyDelta("".join(buffer)))
            text = str(exc) if isinstance(exc, LocalLLMError) else f"The reply failed: {type(exc).__name__}: {exc}"
            self.post_message(ReplyFailed(text, partial=got_text or bool(buffer)))

    async def on_reply_delta(self, message: ReplyDelta) -> None:
        if self.reply is not None:
            await self.reply.append(message.text)
        now = time.perf_counter()
        self.pacer.observe(now)
        if now - self._panel_at >= PANEL_EVERY_S:
            self._panel_at = now
            self._update_live_panel(now)

    async def on_reply_notice(self, message: ReplyNotice) -> None:
        await self.query_one(ChatLog).add_notice(message.text)

    async def on_reply_finished(self, message: ReplyFinished) -> None:
        warning = self.recorder.reply(self.session)
        if warning:
            self.notify(warning, severity="warning")
        if self.reply is not None:
            await self.reply.finish(message.stats, message.status)
        panel = self.query_one(MetricsPanel)
        panel.show_stats(message.stats)
        panel.push_memory(message.stats.rss_now_mib, message.stats.rss_peak_mib)
        stats = message.stats
        self.estimate_memory(stats.prompt_tokens, stats.rss_peak_mib, stats.decode_tok_s,
                             stats.prompt_tokens + stats.completion_tokens // 2)
        self._end_reply("ready")

    async def on_reply_failed(self, message: ReplyFailed) -> None:
        if message.partial:
            self.recorder.reply(self.session)  # what arrived is kept, marked as failed
        if self.reply is not None:
            await self.reply.finish(None, "error")
            if not message.partial and not self.reply.text:
                await self.reply.remove()
        await self.query_one(ChatLog).add_error(message.error)
        alive = self.session.worker_pid is not None
        self._end_reply("ready" if alive else "worker stopped: the next message restarts it (Ctrl+G: log)")

    def _end_reply(self, state: str) -> None:
        self.generating = False
        self.query_one("#prompt", Input).cursor_blink = True
        self.reply = None
        self._set_state(state)
        pid = self.session.worker_pid
        if pid and (self._sampler is None or self._sampler.pid != pid):
            self._sampler = ProcessSampler(pid)

    def _update_live_panel(self, now: float) -> None:
        stats = self.session.live_stats()
        if stats is None:
            return
        panel = self.query_one(MetricsPanel)
        panel.show_stats(stats)
        panel.push_memory(stats.rss_now_mib, stats.rss_peak_mib)
        count = stats.completion_tokens
        if self._rate_mark is not None and count > self._rate_mark[1]:
            panel.push_rate((count - self._rate_mark[1]) / (now - self._rate_mark[0]))
        self._rate_mark = (now, count)

    def _idle_tick(self) -> None:
        """While no reply streams: the worker's memory, so the panel shows what a loaded model holds."""
        if self.generating or self._sampler is None:
            return
        rss = self._sampler.rss_bytes()
        if rss is not None:
            panel = self.query_one(MetricsPanel)
            panel.push_memory(rss / 2**20, max([*panel.rss_history, rss / 2**20]))

    # -- actions -------------------------------------------------------------------------------
    def action_stop(self) -> None:
        if self.generating:
            self.session.stop()
        elif self.session.cancel_load():
            self._set_state("cancelling the load…")

    async def action_regenerate(self) -> None:
        if self.generating or not self.session.history:
            return
        log = self.query_one(ChatLog)
        replies = list(log.query(AssistantMessage))
        if self.session.history[-1].role == "assistant" and replies:
            await replies[-1].remove()
            self.recorder.regenerating()
        await self._start_reply(self.session.regenerate)

    def action_copy_reply(self) -> None:
        last = next((t for t in reversed(self.session.history) if t.role == "assistant"), None)
        if last is None:
            self.notify("Nothing to copy yet.")
            return
        self.copy_to_clipboard(last.content)
        self.notify("Reply copied to the clipboard.")

    async def action_new_chat(self) -> None:
        if self.generating:
            self.session.stop()
            await self.workers.wait_for_complete()
        self.session.clear()
        self.recorder.new_chat()
        await self.query_one(ChatLog).remove_children()

    def action_open_model(self) -> None:
        if not self._still_loading():
            self._open_models()

    def _still_loading(self) -> bool:
        """A second load while one runs would hold two models in RAM: say so instead (Esc cancels)."""
        if self.session.loading:
            self.notify("A model is loading: wait for it, or Esc to cancel the load.")
            return True
        return False

    def action_compare(self) -> None:
        if self.screen is not self.screen_stack[0]:
            raise SkipAction()  # another screen's Input keeps ctrl+e (end of line)
        self.open_compare()

    def open_compare(self) -> None:
        if self.generating:  # two models at once would make both timings wrong
            self.notify("Wait for the reply to finish (or Esc) before comparing.")
            return
        prompt = self.screen_stack[0].query_one("#prompt", Input).value.strip()
        self.push_screen(CompareScreen(prompt, self.session, self.recorder, self.load_options))

    def _pick_options(self, pick) -> LoadOptions:
        """The pick's plan, applied: its GPU layers and the context it was planned for."""
        from dataclasses import replace

        est = pick.estimate
        return replace(self.load_options, n_gpu_layers=pick.gpu_layers if pick.verdict != "CPU only" else 0,
                       n_ctx=est.context if est is not None else self.load_options.n_ctx)

    def _open_models(self, pull: tuple[str, str | None] | None = None,
                     options: LoadOptions | None = None) -> None:
        def chosen(path: str | None) -> None:
            if path is None or self.generating or self._still_loading():
                return
            self.query_one("#prompt", Input).disabled = True
            self.load_model(path or None, options)

        self.push_screen(OpenModelScreen(self.settings.endpoints, self.settings.api_key_env, pull), chosen)

    def on_open_model_screen_endpoint_saved(self, message: OpenModelScreen.EndpointSaved) -> None:
        if message.url in self.settings.endpoints:
            return
        self.settings.endpoints = [*self.settings.endpoints, message.url]
        self._save_settings()
        self.notify(f"Saved {message.url} to the servers list (settings: endpoints).")

    def action_hardware(self) -> None:
        def picked(pick) -> None:
            if pick is None or self.generating or self._still_loading():
                return
            placed = self._pick_options(pick)
            if pick.source.startswith("embedded"):  # nothing to download: chat with it now
                self.query_one("#prompt", Input).disabled = True
                self.load_model(None, placed)
                return
            target = download_target(pick)
            if target is not None:  # the download runs there, with progress and cancel
                self._open_models(pull=target, options=placed)

        self.push_screen(HardwareScreen(), picked)

    def action_bench(self) -> None:
        self.push_screen(BenchScreen())

    def action_quantize(self) -> None:
        def made(path: str | None) -> None:
            if path and not self.generating and not self._still_loading():
                self.query_one("#prompt", Input).disabled = True
                self.load_model(path)

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
            self.query_one(MetricsPanel).show_sampling(self.session.resolved_sampling)
            self.load_options = to_load_options(new, self.load_options)  # at the next model load
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
            await self.query_one(ChatLog).show_history(self.session.history,
                                                       self.session.model.name if self.session.model else "")

        self.push_screen(ConversationsScreen(self.recorder.store), chosen)

    async def on_unmount(self) -> None:
        self.session.close()
        if self.recorder.store is not None:
            self.recorder.store.close()


