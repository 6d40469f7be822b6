"""Saves a chat session's turns as they happen (the user turn when accepted, the reply when it
ends), so killing the app loses at most the reply being generated. Shared by the TUI and the REPL."""

from __future__ import annotations

from typing import Any

from localllm.chat.conversation_records import Conversation, ConversationNotFound
from localllm.chat.conversations import ConversationStore
from localllm.chat.session import ChatSession
from localllm.chat.turns import Turn
from localllm.errors import LocalLLMError


class Recorder:
    """Wraps a ConversationStore; a failing store becomes a warning, never a lost chat."""

    def __init__(self, store: ConversationStore | None) -> None:
        self.store = store
        self.conversation_id: int | None = None
        # turns a failed save left behind, in order: the next save writes them first
        self._pending: list[tuple[Turn, dict[str, Any]]] = []

    def _save(self, session: ChatSession, turn: Turn) -> str | None:
        if self.store is None:
            return None
        self._pending.append((turn, {"model": session.model, "system_prompt": session.system_prompt}))
        try:
            self._flush()
        except LocalLLMError as exc:
            return (f"The conversation could not be saved ({len(self._pending)} message(s) kept here, "
                    f"retried at the next save): {exc}")
        return None

    def _flush(self) -> None:
        assert self.store is not None
        while self._pending:
            turn, at = self._pending[0]
            try:
                if self.conversation_id is None:
                    self.conversation_id = self.store.create(model=at["model"], system_prompt=at["system_prompt"])
                self.store.append_turn(self.conversation_id, turn, model=at["model"])
            except ConversationNotFound:  # deleted from the history screen meanwhile: start a new one
                self.conversation_id = None
                continue
            self._pending.pop(0)

    def user_turn(self, session: ChatSession) -> str | None:
        """After session.send() accepted a message (a refused one raised before)."""
        user = next((t for t in reversed(session.history) if t.role == "user"), None)
        return self._save(session, user) if user is not None else None

    def reply(self, session: ChatSession) -> str | None:
        last = session.history[-1] if session.history else None
        if last is None or last.role != "assistant":
            return None
        return self._save(session, last)

    def regenerating(self) -> None:
        if self.store is not None and self.conversation_id is not None:
            try:
                self.store.remove_last_turn(self.conversation_id)
            except LocalLLMError:
                pass

    def new_chat(self) -> None:
        self.conversation_id = None
        self._pending.clear()

    def conversation(self, session: ChatSession) -> Conversation | None:
        """This chat as the store holds it: the saved conversation, or with conversations off (no store)
        the session's turns written to a throwaway database and read back, so an export of either is the
        same. None: nothing to export yet."""
        if self.store is not None and self.conversation_id is not None:
            return self.store.load(self.conversation_id)
        if not session.history:
            return None
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="localllm-export-") as tmp:
            store = ConversationStore(Path(tmp) / "export.db")
            try:
                cid = store.create(model=session.model, system_prompt=session.system_prompt)
                for turn in session.history:
                    store.append_turn(cid, turn, model=session.model)  # as _save keeps each turn
                return store.load(cid)
            finally:
                store.close()

    def open(self, conversation_id: int, session: ChatSession) -> None:
        """Put a saved conversation back into the session (the loaded model stays)."""
        if self.store is None:
            return
        conv = self.store.load(conversation_id)
        session.clear()
        session.history = conv.session_turns()
        session.system_prompt = conv.system_prompt or session.system_prompt
        self.conversation_id = conversation_id
