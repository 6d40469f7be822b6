"""The localllm TUI: wires the chat session, the widgets and the thread workers together."""

from __future__ import annotations

import time
from collections.abc import Iterable

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input

from localllm.config import LoadOptions, SamplingParams
from localllm.errors import LocalLLMError
from localllm.metrics import ProcessSampler
from localllm.session import ChatSession, ReplyDone, TextDelta, TrimNotice
from localllm.ui.messages import (
    ModelLoaded,
    ModelLoadFailed,
    ReplyDelta,
    ReplyFailed,
    ReplyFinished,
    ReplyNotice,
)
from localllm.ui.screens.log_screen import LogScreen
from localllm.ui.screens.open_model import OpenModelScreen
from localllm.ui.widgets.chat_log import AssistantMessage, ChatLog
from localllm.ui.widgets.metrics_panel import MetricsPanel
from localllm.ui.widgets.status_bar import StatusBar

# A repaint costs ~10-20 ms of CPU here; on a machine with no core to spare beside llama.cpp's
# threads that time comes straight out of decode speed. So while a reply streams, the interval
# between repaints adapts to keep the UI thread under UI_CPU_BUDGET of one core (measured with
# thread_time), between UI_FLUSH_MIN_S and UI_FLUSH_MAX_S; with a spare core it stays at the minimum.
UI_FLUSH_S = 0.25  # starting interval
UI_FLUSH_MIN_S = 0.1
UI_FLUSH_MAX_S = 1.0
UI_CPU_BUDGET = 0.03
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
        Binding("ctrl+o", "open_model", "Model"),
        Binding("ctrl+g", "show_log", "Log"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, model_path: str | None = None, load_options: LoadOptions | None = None,
                 sampling: SamplingParams | None = None, system_prompt: str | None = None) -> None:
        super().__init__()
        self.session = ChatSession(sampling=sampling or SamplingParams())
        if system_prompt is not None:
            self.session.system_prompt = system_prompt
        self.model_path = model_path
        self.load_options = load_options or LoadOptions()
        self.generating = False
        self.reply: AssistantMessage | None = None
        self._sampler: ProcessSampler | None = None
        self._rate_mark: tuple[float, int] | None = None
        self._panel_at = 0.0
        self.flush_interval = UI_FLUSH_S
        self._ui_cpu_mark: tuple[float, float] | None = None

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar()
        with Horizontal(id="main"):
            yield ChatLog()
            yield MetricsPanel()
        yield Input(placeholder="Type a message, Enter to send", id="prompt", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(IDLE_TICK_S, self._idle_tick)
        self.load_model(self.model_path)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Stop reply", "Stop the reply being generated (Esc)", self.action_stop)
        yield SystemCommand("Regenerate", "Answer the last message again (Ctrl+R)", self.action_regenerate)
        yield SystemCommand("Copy reply", "Copy the last reply to the clipboard (Ctrl+Y)",
                            self.action_copy_reply)
        yield SystemCommand("New chat", "Start a new conversation (Ctrl+N)", self.action_new_chat)
        yield SystemCommand("Load model", "Load a GGUF file; the conversation is kept (Ctrl+O)",
                            self.action_open_model)
        yield SystemCommand("Worker log", "Show the model worker's log (Ctrl+G)", self.action_show_log)

    # -- model loading -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load_model(self, path: str | None) -> None:
        self.call_from_thread(self._set_state, "loading model…")
        try:
            if not path:
                from localllm.embedded import embedded_model_path

                path = str(embedded_model_path())
            info = self.session.load(path, self.load_options)  # the path says which backend
        except LocalLLMError as exc:
            self.post_message(ModelLoadFailed(str(exc)))
            return
        self.post_message(ModelLoaded(info))

    def _set_state(self, state: str) -> None:
        self.query_one(StatusBar).state = state

    def on_model_loaded(self, message: ModelLoaded) -> None:
        self.query_one(StatusBar).model = message.info
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
        await self._start_reply(lambda: self.session.send(text))

    async def _start_reply(self, start) -> None:
        model = self.session.model
        self.reply = await self.query_one(ChatLog).start_reply(model.name if model else "model")
        self.generating = True
        self._rate_mark = None
        self._panel_at = 0.0
        self._ui_cpu_mark = None
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
                    if now - last >= self.flush_interval:
                        self.post_message(ReplyDelta("".join(buffer)))
                        buffer.clear()
                        got_text = True
                        last = now
                elif isinstance(event, TrimNotice):
                    self.post_message(ReplyNotice(str(event)))
                elif isinstance(event, ReplyDone):
                    if buffer:
                        self.post_message(ReplyDelta("".join(buffer)))
                    self.post_message(ReplyFinished(event.stats, event.turn.status))
        except LocalLLMError as exc:
            if buffer:
                self.post_message(ReplyDelta("".join(buffer)))
            self.post_message(ReplyFailed(str(exc), partial=got_text or bool(buffer)))

    async def on_reply_delta(self, message: ReplyDelta) -> None:
        if self.reply is not None:
            await self.reply.append(message.text)
        now = time.perf_counter()
        self._adapt_flush_interval(now)
        if now - self._panel_at >= PANEL_EVERY_S:
            self._panel_at = now
            self._update_live_panel(now)

    async def on_reply_notice(self, message: ReplyNotice) -> None:
        await self.query_one(ChatLog).add_notice(message.text)

    async def on_reply_finished(self, message: ReplyFinished) -> None:
        if self.reply is not None:
            await self.reply.finish(message.stats, message.status)
        panel = self.query_one(MetricsPanel)
        panel.show_stats(message.stats)
        panel.push_memory(message.stats.rss_now_mib, message.stats.rss_peak_mib)
        self._end_reply("ready")

    async def on_reply_failed(self, message: ReplyFailed) -> None:
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

    def _spare_core(self) -> bool:
        import psutil

        model = self.session.model
        cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
        return model is not None and cores - model.n_threads >= 1

    def _adapt_flush_interval(self, now: float) -> None:
        """Keep the UI thread's share of a core under budget while the model decodes."""
        cpu = time.thread_time()  # this (main) thread runs every layout and repaint
        if self._ui_cpu_mark is None:
            self._ui_cpu_mark = (now, cpu)
            return
        wall = now - self._ui_cpu_mark[0]
        if wall < 1.0:
            return
        share = (cpu - self._ui_cpu_mark[1]) / wall
        self._ui_cpu_mark = (now, cpu)
        if self._spare_core():
            self.flush_interval = UI_FLUSH_MIN_S
        elif share > UI_CPU_BUDGET:
            self.flush_interval = min(UI_FLUSH_MAX_S, self.flush_interval * 1.5)
        elif share < UI_CPU_BUDGET / 2:
            self.flush_interval = max(UI_FLUSH_MIN_S, self.flush_interval / 1.25)

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

    async def action_regenerate(self) -> None:
        if self.generating or not self.session.history:
            return
        log = self.query_one(ChatLog)
        replies = list(log.query(AssistantMessage))
        if self.session.history[-1].role == "assistant" and replies:
            await replies[-1].remove()
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
        await self.query_one(ChatLog).remove_children()

    def action_open_model(self) -> None:
        def chosen(path: str | None) -> None:
            if path is None or self.generating:
                return
            self.query_one("#prompt", Input).disabled = True
            self.load_model(path or None)

        self.push_screen(OpenModelScreen(), chosen)

    def action_show_log(self) -> None:
        self.push_screen(LogScreen(self.session.log_path))

    async def on_unmount(self) -> None:
        self.session.close()


