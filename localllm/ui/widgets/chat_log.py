"""The conversation: user messages, streamed Markdown replies with a stats line, notices."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from localllm.chat.report import stats_line
from localllm.runtime.metrics import ReplyStats
from localllm.ui.plain import plain


class UserMessage(Static):
    pass


HINT = ("Type a message below; Enter sends it.\n"  # lines that fit the log's ~48 columns at 80x24
        "F4      the models that fit this machine\n"
        "Ctrl+O  open another model\n"
        "F1      every key")


class ChatHint(Static):
    """What an empty conversation says, so a first-time user knows where to go; gone at the first message."""

    def __init__(self) -> None:
        super().__init__(HINT, markup=False)


class Notice(Static):
    pass


class ErrorMessage(Static):
    pass


class AssistantMessage(Widget):
    """A reply: Markdown streamed in place, then one line of its numbers."""

    DEFAULT_CSS = "AssistantMessage { height: auto; }"

    def __init__(self, title: str) -> None:
        super().__init__()
        self.border_title = plain(title)  # a model name, as it is
        self.markdown = Markdown("")
        self.stats = Static("generating…", classes="reply-stats", markup=False)
        self._stream: MarkdownStream | None = None
        self.text = ""
        self.deltas = 0  # how many pieces the text arrived in

    def compose(self):
        yield self.markdown
        yield self.stats

    async def append(self, text: str) -> None:
        self.text += text
        self.deltas += 1
        if self._stream is None:
            self._stream = Markdown.get_stream(self.markdown)
        await self._stream.write(text)

    async def finish(self, stats: ReplyStats | None, status: str) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        label = {"ok": "", "stopped": "stopped · ", "length": "cut at the token limit · ",
                 "error": "failed · "}.get(status, f"{status} · ")
        self.stats.update(label + (stats_line(stats) if stats else ""))
        self.set_class(status != "ok", f"-{status}")


class ChatLog(VerticalScroll):
    """Anchored: stays at the end as replies grow (no scroll call per update), until the user
    scrolls up to read; scrolling back to the end re-anchors."""

    def on_mount(self) -> None:
        self.anchor()
        self.mount(ChatHint())

    async def restart(self) -> None:
        """A new conversation: an empty log, with the hint."""
        await self.remove_children()
        await self.mount(ChatHint())

    async def add_user(self, text: str) -> UserMessage:
        await self.query(ChatHint).remove()
        widget = UserMessage(text, markup=False)
        await self.mount(widget)
        self.anchor()  # the user's own message brings the view back to the end
        return widget

    async def start_reply(self, title: str) -> AssistantMessage:
        widget = AssistantMessage(title)
        await self.mount(widget)
        return widget

    async def show_history(self, turns, title: str) -> None:
        """Redraw a reopened conversation: its messages and each reply's saved numbers."""
        await self.remove_children()
        if not turns:
            await self.mount(ChatHint())
        for turn in turns:
            if turn.role == "user":
                await self.mount(UserMessage(turn.content, markup=False))
            else:
                reply = AssistantMessage(title)
                await self.mount(reply)
                await reply.append(turn.content)
                await reply.finish(turn.stats, turn.status)
        self.anchor()

    async def add_notice(self, text: str) -> None:
        await self.mount(Notice(text, markup=False))

    async def add_error(self, text: str) -> None:
        await self.mount(ErrorMessage(text, markup=False))
