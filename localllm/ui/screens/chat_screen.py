"""The chat, the app's first screen: the log, the prompt, the status bar and the metrics panel, and the
thread workers that load a model and stream its replies. The session (chat.session) does the work and
measures it; this screen shows it. Threads reach the widgets only by message or call_from_thread."""

from __future__ import annotations

import dataclasses
import time

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Input

from localllm.chat.machine_facts import gpu_binding_mismatch
from localllm.chat.recorder import Recorder
from localllm.chat.session import ChatSession
from localllm.chat.turns import KernelNotice, ReplyDone, TextDelta, TrimNotice
from localllm.config import LoadOptions, default_threads
from localllm.errors import LocalLLMError
from localllm.runtime.metrics import ProcessSampler
from localllm.ui.messages import (
    MeterSnapshot,
    ModelLoaded,
    ModelLoadFailed,
    ReplyDelta,
    ReplyFailed,
    ReplyFinished,
    ReplyNotice,
)
from localllm.ui.pacing import RepaintPacer
from localllm.ui.widgets.chat_log import AssistantMessage, ChatLog
from localllm.ui.widgets.metrics_panel import MetricsPanel
from localllm.ui.widgets.prompt_input import PromptInput
from localllm.ui.widgets.status_bar import StatusBar
from localllm.ui.widgets.wrapping_footer import WrappingFooter

PANEL_EVERY_S = 0.5
IDLE_TICK_S = 1.0


class ChatScreen(Screen):
    def __init__(self, session: ChatSession, recorder: Recorder, model_path: str | None,
                 load_options: LoadOptions) -> None:
        """`model_path`: loaded at mount (None: the embedded model); `load_options`: every load's, unless
        a load is given its own (a Machine-screen pick's placement)."""
        super().__init__()
        self.session = session
        self.recorder = recorder
        self.model_path = model_path
        self.load_options = load_options
        self.generating = False
        self.reply: AssistantMessage | None = None
        self._sampler: ProcessSampler | None = None
        self._rate_mark: tuple[float, int] | None = None
        self._binding_warned = False
        self.pacer = RepaintPacer()

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar()
        with Horizontal(id="main"):
            yield ChatLog()
            yield MetricsPanel()
        prompt = PromptInput(placeholder="Type a message, Enter to send", id="prompt", disabled=True)
        prompt.cursor_blink = False  # a blinking cursor repaints twice a second: most of the idle TUI's CPU
        yield prompt
        yield WrappingFooter()

    def on_mount(self) -> None:
        self.set_interval(IDLE_TICK_S, self._idle_tick)
        self.load_model(self.model_path)

    @property
    def draft(self) -> str:
        """The prompt being typed."""
        return self.query_one("#prompt", PromptInput).message.strip()

    # -- model loading -------------------------------------------------------------------------
    def reload(self, path: str | None, options: LoadOptions | None = None) -> None:
        """Load another model (None: the embedded one), unless a reply streams or a load runs; the prompt
        waits for it."""
        if self.generating or self.still_loading():
            return
        self.query_one("#prompt", Input).disabled = True
        self.load_model(path, options)

    def still_loading(self) -> bool:
        """A second load while one runs would hold two models in RAM: say so instead (Esc cancels)."""
        if self.session.loading:
            self.app.notify("A model is loading: wait for it, or Esc to cancel the load.")
            return True
        return False

    def placed(self, pick) -> LoadOptions:
        """The load options with a recommendation's plan applied: its GPU layers and the context it was
        planned for."""
        est, options = pick.estimate, self.load_options
        return dataclasses.replace(options, gpu_layers=pick.gpu_layers if pick.verdict != "CPU only" else 0,
                                   context=est.context if est is not None else options.context)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load_model(self, path: str | None, options: LoadOptions | None = None) -> None:
        """`options`: this load only (a Machine-screen pick's placement); else the screen's."""
        self.app.call_from_thread(self._set_state, "loading model…")
        self.app.call_from_thread(self._show_estimate, None)  # the last model's figure is not this one's
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
            self.app.call_from_thread(self.app.notify, notice, severity="warning", timeout=15)
        if info.backend == "llama_cpp":  # a server's GPUs are the server's business
            self._check_binding()
        estimate = self.session.memory_estimate_mib(fill=1)  # each reply's comes with its ReplyFinished
        if estimate is not None:
            self.app.call_from_thread(self._show_estimate, estimate)

    def _load_progress(self, fraction: float) -> None:
        """In the load's thread: llama.cpp's progress through the file, in the status bar."""
        try:
            self.app.call_from_thread(self._set_state, f"loading model… {fraction:.0%} (Esc cancels)")
        except RuntimeError:  # the app is closing
            pass

    def _check_binding(self) -> None:
        """A GPU here that the installed llama-cpp-python cannot use: say so in the status bar, once with
        the exact fix (the same check as `localllm doctor`). Runs in the load worker's thread."""
        if self._binding_warned:
            return
        mismatch = gpu_binding_mismatch()
        if mismatch is None:
            return
        self._binding_warned = True
        self.app.call_from_thread(self._warn_binding, f"{mismatch.summary}. Fix: {mismatch.fix}")

    def _warn_binding(self, text: str) -> None:
        self.query_one(StatusBar).warning = "GPU unused: CPU-only llama.cpp (localllm doctor)"
        self.app.notify(text, severity="warning", timeout=30)

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
        panel.watch_server(message.info)  # a model behind a server: what the server itself says
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
        prompt = self.query_one("#prompt", PromptInput)
        text = self.draft  # pasted blocks in full (PromptInput)
        if not text or self.generating:
            return  # empty input is ignored; one reply at a time
        prompt.remember(text)
        prompt.clear()
        await self.query_one(ChatLog).add_user(text)

        def start():
            events = self.session.send(text)  # raises here if refused: nothing is saved
            self._warn(self.recorder.user_turn(self.session))
            return events

        await self._start_reply(start)

    def _warn(self, warning: str | None) -> None:
        if warning:
            self.app.call_from_thread(self.app.notify, warning, severity="warning")

    async def _start_reply(self, start) -> None:
        model = self.session.model
        self.reply = await self.query_one(ChatLog).start_reply(model.name if model else "model")
        self.generating = True
        self._rate_mark = None
        self.pacer.reset()
        self.query_one("#prompt", Input).cursor_blink = False  # a blink is a repaint
        self._set_state("generating")
        # Paint the new messages first, so that repaint does not land inside the decode.
        self.call_after_refresh(self.generate, start)

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def generate(self, start) -> None:
        """Runs the session's stream; text is batched so the UI does not steal decode time. The meter is
        read here, in the thread that feeds it, and its snapshots go to the panel by message."""
        buffer: list[str] = []
        last = time.perf_counter()
        panel_at = 0.0
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
                        if now - panel_at >= PANEL_EVERY_S:
                            panel_at = now
                            self._post_snapshot(now)
                elif isinstance(event, TrimNotice | KernelNotice):
                    self.post_message(ReplyNotice(str(event)))
                elif isinstance(event, ReplyDone):
                    if buffer:
                        self.post_message(ReplyDelta("".join(buffer)))
                    self.post_message(ReplyFinished(event.stats, event.turn.status, event.estimate_mib))
        except Exception as exc:  # LocalLLMError says what to do; anything else is a bug, said as one
            if buffer:
                self.post_message(ReplyDelta("".join(buffer)))
            text = str(exc) if isinstance(exc, LocalLLMError) else f"The reply failed: {type(exc).__name__}: {exc}"
            self.post_message(ReplyFailed(text, partial=got_text or bool(buffer)))

    def _post_snapshot(self, now: float) -> None:
        stats = self.session.live_stats()  # a fresh ReplyStats: the message owns it
        if stats is not None:
            self.post_message(MeterSnapshot(stats, now))

    async def on_reply_delta(self, message: ReplyDelta) -> None:
        if self.reply is not None:
            await self.reply.append(message.text)
        self.pacer.observe(time.perf_counter())

    def on_meter_snapshot(self, message: MeterSnapshot) -> None:
        stats = message.stats
        panel = self.query_one(MetricsPanel)
        panel.show_stats(stats)
        panel.push_memory(stats.rss_now_mib, stats.rss_peak_mib)
        count = stats.completion_tokens
        if self._rate_mark is not None and count > self._rate_mark[1]:
            panel.push_rate((count - self._rate_mark[1]) / (message.at - self._rate_mark[0]))
        self._rate_mark = (message.at, count)

    async def on_reply_notice(self, message: ReplyNotice) -> None:
        await self.query_one(ChatLog).add_notice(message.text)

    async def on_reply_finished(self, message: ReplyFinished) -> None:
        warning = self.recorder.reply(self.session)
        if warning:
            self.app.notify(warning, severity="warning")
        if self.reply is not None:
            await self.reply.finish(message.stats, message.status)
        panel = self.query_one(MetricsPanel)
        panel.show_stats(message.stats)
        panel.push_memory(message.stats.rss_now_mib, message.stats.rss_peak_mib)
        if message.estimate_mib is not None:
            self._show_estimate(message.estimate_mib)
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

    def _idle_tick(self) -> None:
        """While no reply streams: the worker's memory, so the panel shows what a loaded model holds."""
        if self.generating or self._sampler is None:
            return
        rss = self._sampler.rss_bytes()
        if rss is not None:
            panel = self.query_one(MetricsPanel)
            panel.push_memory(rss / 2**20, max([*panel.rss_history, rss / 2**20]))

    # -- actions (the app binds their keys) ------------------------------------------------------
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
            self.app.notify("Nothing to copy yet.")
            return
        self.app.copy_to_clipboard(last.content)
        self.app.notify("Reply copied to the clipboard.")

    def action_export(self) -> None:
        """This conversation as Markdown in data/exports, saved or not (with conversations off in the
        settings F3 has nothing to export; this still does)."""
        import time

        from localllm.chat.conversation_export import export_filename, to_markdown, write_atomically
        from localllm.config import data_dir

        try:
            conv = self.recorder.conversation(self.session)
            if conv is None:
                self.app.notify("Nothing to export yet: send a message first.")
                return
            tag = None if self.recorder.conversation_id is not None else time.strftime("%Y%m%d-%H%M%S")
            path = write_atomically(data_dir() / "exports" / export_filename(conv, ".md", tag), to_markdown(conv))
        except (LocalLLMError, OSError) as exc:
            self.app.notify(f"Could not export the conversation: {exc}", severity="error")
            return
        self.app.notify(f"Exported to {path}", title="Conversation")

    async def action_new_chat(self) -> None:
        if self.generating:
            self.session.stop()
            await self.workers.wait_for_complete()
        self.session.clear()
        self.recorder.new_chat()
        await self.query_one(ChatLog).restart()

    async def show_conversation(self) -> None:
        """The session's history (a saved conversation just opened), in place of the log's."""
        model = self.session.model
        await self.query_one(ChatLog).show_history(self.session.history, model.name if model else "")
        prompt = self.query_one("#prompt", PromptInput)
        for turn in self.session.history:  # Up brings back this conversation's messages too
            if turn.role == "user":
                prompt.remember(turn.content)
