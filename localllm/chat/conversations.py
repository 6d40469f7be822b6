"""Saved conversations: a SQLite database in the data folder, written turn by turn as they happen.

Each turn is one transaction in WAL mode, so killing the app mid-reply loses at most that reply.
A conversation also keeps the model comparisons made from it (localllm.chat.compare: one prompt, the
reply and figures of each model), in a table of their own.
Headless (the TUI and the CLI both use it); never imports textual."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localllm.chat import conversation_export
from localllm.chat.conversation_records import (
    Conversation,
    ConversationNotFound,
    ConversationStoreError,
    ConversationSummary,
    SavedComparison,
    SavedTurn,
    now,
    title_from,
)
from localllm.chat.conversation_schema import MIGRATIONS, SCHEMA_VERSION, statements
from localllm.config import data_dir
from localllm.config.redact import redact

if TYPE_CHECKING:
    pass

DB_FILE = "conversations.db"

# How long a write waits for another process's lock before it fails (and is retried at the next save).
BUSY_TIMEOUT_S = 10.0


def default_db_path() -> Path:
    return data_dir() / DB_FILE


def _json(obj: Any) -> str | None:
    """Dataclasses (ModelInfo), objects with to_dict() (ReplyStats) and dicts as JSON text."""
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    # default=str: a stray Path in ModelInfo.extra is not fatal; redact: no server URL's credentials
    return json.dumps(redact(obj), default=str)


def _unjson(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


def _title(db: sqlite3.Connection, conversation_id: int) -> str | None:
    """The conversation's title (None: untitled); ConversationNotFound when there is no such one."""
    row = db.execute("SELECT title FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    if row is None:
        raise ConversationNotFound(conversation_id)
    title: str | None = row[0]
    return title


class ConversationStore:
    """The conversation database. Thread-safe: the TUI saves from its UI thread and workers."""

    def __init__(self, path: str | Path | None = None, busy_timeout_s: float | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) below.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=BUSY_TIMEOUT_S if busy_timeout_s is None else busy_timeout_s)
            self._db.execute("PRAGMA foreign_keys = ON")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode})")
            # NORMAL in WAL mode: a killed process loses nothing committed; only a power cut may
            # lose the last transactions, and the file is never corrupted either way.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise ConversationStoreError(
                f"Cannot open the conversation database {self.path}: {exc}. If the file is damaged, "
                f"move it aside and localllm starts a new one.") from exc

    # -- plumbing ------------------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConversationStoreError(
                f"The conversation database {self.path} was written by a newer localllm (schema "
                f"{version}, this one knows {SCHEMA_VERSION}). Upgrade localllm to open it.")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx() as db:
                for statement in statements(MIGRATIONS[step]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {step}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front, so it never deadlocks. A
        failure anywhere (a full disk, a lock held past the timeout, a damaged page, COMMIT itself) is
        rolled back, so the next write starts clean, and raised as ConversationStoreError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        try:
                            self._db.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass  # the connection is unusable; the error below says why
                    raise
            except sqlite3.Error as exc:
                raise self._failed("saved to", exc) from exc

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cur = self._db.execute(sql, args)
                cur.row_factory = sqlite3.Row
                return cur.fetchall()
            except sqlite3.Error as exc:
                raise self._failed("read from", exc) from exc

    def _failed(self, verb: str, exc: sqlite3.Error) -> ConversationStoreError:
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            why = "another program holds it (another localllm?); the next save tries again"
        elif "full" in text or "disk i/o" in text:
            why = f"the disk is full or failing: free space on {self.path.parent}; the next save tries again"
        elif "malformed" in text or "not a database" in text or "corrupt" in text:
            why = "the file is damaged: quit, move it aside, and localllm starts a new one"
        else:
            why = "the next save tries again"
        return ConversationStoreError(f"The conversation database {self.path} could not be {verb} "
                                      f"({exc}): {why}.")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------
    def create(self, title: str = "", model: Any = None, system_prompt: str = "") -> int:
        """A new, empty conversation; with no title, the first user message names it."""
        stamp = now()
        with self._tx() as db:
            cur = db.execute("INSERT INTO conversations (title, created, updated, model, system_prompt) "
                             "VALUES (?, ?, ?, ?, ?)", (title.strip(), stamp, stamp, _json(model),
                                                        system_prompt or ""))
            return int(cur.lastrowid)  # type: ignore[arg-type]  # an INSERT always sets it

    def append_turn(self, conversation_id: int, turn: Any, model: Any = None) -> int:
        """Save one finished turn (a session.Turn or anything with role/content/status/stats) in its
        own transaction; returns its seq. Call it for the user turn when sent, the reply when done."""
        return self.append_message(conversation_id, turn.role, turn.content,
                                   status=getattr(turn, "status", "ok") or "ok",
                                   stats=getattr(turn, "stats", None), model=model)

    def append_message(self, conversation_id: int, role: str, content: str, status: str = "ok",
                       stats: Any = None, model: Any = None) -> int:
        stamp = now()
        model_json = _json(model)
        with self._tx() as db:
            title = _title(db, conversation_id)
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?",
                             (conversation_id,)).fetchone()[0]
            db.execute("INSERT INTO messages (conversation_id, seq, role, content, status, stats, model, "
                       "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (conversation_id, seq, role, content, status, _json(stats), model_json, stamp))
            title = title or (title_from(content) if role == "user" else "")
            # The conversation's model is the latest reply's, so the list shows what it runs on now.
            db.execute("UPDATE conversations SET updated = ?, title = ?, model = COALESCE(?, model) "
                       "WHERE id = ?", (stamp, title, model_json, conversation_id))
            return int(seq)

    def add_comparison(self, conversation_id: int, comparison: Any) -> int:
        """Save a finished comparison (a localllm.chat.compare.Comparison, or its dict) with the
        conversation, after its latest message; returns the comparison's id. An untitled conversation
        is named after the prompt."""
        data = comparison.to_dict() if hasattr(comparison, "to_dict") else dict(comparison)
        prompt = str(data.get("prompt", ""))
        results = [r if isinstance(r, dict) else dataclasses.asdict(r) for r in data.get("results") or []]
        stamp = now()
        with self._tx() as db:
            title = _title(db, conversation_id)
            after = db.execute("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?",
                               (conversation_id,)).fetchone()[0]
            cur = db.execute("INSERT INTO comparisons (conversation_id, after_seq, prompt, system_prompt, sampling, "
                             "results, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (conversation_id, after, prompt, data.get("system_prompt") or "",
                              _json(data.get("sampling")), json.dumps(redact(results), default=str), stamp))
            db.execute("UPDATE conversations SET updated = ?, title = ? WHERE id = ?",
                       (stamp, title or title_from(prompt), conversation_id))
            return int(cur.lastrowid)  # type: ignore[arg-type]  # an INSERT always sets it

    def remove_last_turn(self, conversation_id: int, role: str = "assistant") -> bool:
        """Delete the latest message if it has `role` (a regenerated reply replaces the old one)."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM messages WHERE id = (SELECT id FROM messages WHERE conversation_id = ? "
                             "ORDER BY seq DESC LIMIT 1) AND role = ?", (conversation_id, role))
            if cur.rowcount:
                db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now(), conversation_id))
            return cur.rowcount > 0

    def set_system_prompt(self, conversation_id: int, system_prompt: str) -> None:
        self._update(conversation_id, "system_prompt", system_prompt)

    def rename(self, conversation_id: int, title: str) -> None:
        self._update(conversation_id, "title", title.strip())

    def _update(self, conversation_id: int, column: str, value: str) -> None:
        with self._tx() as db:
            cur = db.execute(f"UPDATE conversations SET {column} = ?, updated = ? WHERE id = ?",
                             (value, now(), conversation_id))
            if cur.rowcount == 0:
                raise ConversationNotFound(conversation_id)

    def delete(self, conversation_id: int) -> None:
        """Remove a conversation and its messages (ON DELETE CASCADE)."""
        with self._tx() as db:
            if db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount == 0:
                raise ConversationNotFound(conversation_id)

    # -- reading -------------------------------------------------------------------------------
    def list(self) -> list[ConversationSummary]:
        """Every conversation, most recently updated first, with its message count."""
        rows = self._query(
            "SELECT c.id, c.title, c.created, c.updated, c.model, COUNT(m.id) AS n FROM conversations c "
            "LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id ORDER BY c.updated DESC, c.id DESC")
        return [ConversationSummary(r["id"], r["title"], r["created"], r["updated"], _unjson(r["model"]),
                                    r["n"]) for r in rows]

    def load(self, conversation_id: int) -> Conversation:
        """A conversation with its turns in order."""
        head = self._query("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
        if not head:
            raise ConversationNotFound(conversation_id)
        c = head[0]
        rows = self._query("SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq", (conversation_id,))
        turns = [SavedTurn(r["seq"], r["role"], r["content"], r["status"], _unjson(r["stats"]),
                           _unjson(r["model"]), r["created"]) for r in rows]
        rows = self._query("SELECT * FROM comparisons WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        comparisons = [SavedComparison(r["id"], r["prompt"], json.loads(r["results"]), r["system_prompt"],
                                       _unjson(r["sampling"]), r["after_seq"], r["created"]) for r in rows]
        return Conversation(c["id"], c["title"], c["created"], c["updated"], _unjson(c["model"]),
                            c["system_prompt"], turns, comparisons)

    # -- export --------------------------------------------------------------------------------
    def export_json(self, conversation_id: int) -> str:
        """The conversation as JSON: every message, and each reply with its model and stats."""
        return conversation_export.to_json(self.load(conversation_id))

    def export_markdown(self, conversation_id: int) -> str:
        """The conversation as Markdown: each reply under its model's name, with its stats line."""
        return conversation_export.to_markdown(self.load(conversation_id))

    def export_to_file(self, conversation_id: int, path: str | Path) -> Path:
        """Write an export (.json: JSON, anything else: Markdown) atomically; returns the path."""
        path = Path(path)
        text = (self.export_json if path.suffix.lower() == ".json" else self.export_markdown)(conversation_id)
        return conversation_export.write_atomically(path, text)
