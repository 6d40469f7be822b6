"""Saved conversations: a SQLite database in the data folder, written turn by turn as they happen.

Each turn is one transaction in WAL mode, so killing the app mid-reply loses at most that reply.
A conversation also keeps the model comparisons made from it (localllm.chat.compare: one prompt, the
reply and figures of each model), in a table of their own.
Headless (the TUI and the CLI both use it); never imports textual."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localllm.config import data_dir
from localllm.config.redact import redact
from localllm.errors import LocalLLMError

if TYPE_CHECKING:
    from localllm.chat.session import Turn
    from localllm.runtime.metrics import ReplyStats

DB_FILE = "conversations.db"
SCHEMA_VERSION = 2
TITLE_CHARS = 60

# Version 1. A later version adds a step to MIGRATIONS; user_version says which steps have run.
SCHEMA_V1 = """
CREATE TABLE conversations (
    id            INTEGER PRIMARY KEY,
    title         TEXT NOT NULL DEFAULT '',
    created       TEXT NOT NULL,            -- ISO 8601 UTC
    updated       TEXT NOT NULL,
    model         TEXT,                     -- JSON: the model of the latest reply (ModelInfo)
    system_prompt TEXT NOT NULL DEFAULT ''
);
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,       -- 1, 2, 3... within the conversation
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'ok',  -- ok | stopped | length | error
    stats           TEXT,                   -- JSON: ReplyStats.to_dict() of an assistant turn
    model           TEXT,                   -- JSON: the model that wrote this reply
    created         TEXT NOT NULL,
    UNIQUE (conversation_id, seq)
);
CREATE INDEX conversations_by_updated ON conversations (updated DESC, id DESC);
"""
# Version 2: model comparisons (localllm.chat.compare). A version 1 database gains the table when
# opened; its conversations and messages are untouched.
SCHEMA_V2 = """
CREATE TABLE comparisons (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    after_seq       INTEGER NOT NULL DEFAULT 0, -- the conversation's last message seq when it was made
    prompt          TEXT NOT NULL,
    system_prompt   TEXT NOT NULL DEFAULT '',
    sampling        TEXT,                   -- JSON: SamplingParams as a dict
    results         TEXT NOT NULL,          -- JSON list, per model: spec, model_name, quant, text, stats, error, status
    created         TEXT NOT NULL
);
CREATE INDEX comparisons_by_conversation ON comparisons (conversation_id, id);
"""
MIGRATIONS = {1: SCHEMA_V1, 2: SCHEMA_V2}


# How long a write waits for another process's lock before it fails (and is retried at the next save).
BUSY_TIMEOUT_S = 10.0


class ConversationStoreError(LocalLLMError):
    """The conversation database cannot be opened or used; the message names the file."""


class ConversationNotFound(LocalLLMError):
    def __init__(self, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        super().__init__(f"No saved conversation with id {conversation_id} (it may have been deleted).")


@dataclass
class SavedTurn:
    """One stored message; stats and model are plain dicts as saved."""

    seq: int
    role: str
    content: str
    status: str = "ok"
    stats: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    created: str = ""


@dataclass
class SavedComparison:
    """One stored comparison: the prompt, and per model a dict (spec, model_name, quant, text, stats,
    error, status) as localllm.chat.compare.CompareResult writes it."""

    id: int
    prompt: str
    results: list[dict[str, Any]] = field(default_factory=list)
    system_prompt: str = ""
    sampling: dict[str, Any] | None = None
    after_seq: int = 0  # made after this message (0: before any)
    created: str = ""


@dataclass
class ConversationSummary:
    """A row of the conversation list."""

    id: int
    title: str
    created: str
    updated: str
    model: dict[str, Any] | None
    message_count: int


@dataclass
class Conversation:
    id: int
    title: str
    created: str
    updated: str
    model: dict[str, Any] | None
    system_prompt: str
    turns: list[SavedTurn] = field(default_factory=list)
    comparisons: list[SavedComparison] = field(default_factory=list)

    def session_turns(self) -> list[Turn]:
        """The turns as localllm.chat.session.Turn objects, to put back into a ChatSession's history."""
        from localllm.chat.session import Turn

        return [Turn(t.role, t.content, stats_from_dict(t.stats), t.status)
                for t in self.turns if t.role in ("user", "assistant")]


def now() -> str:
    # Fixed width, so text order is time order (the list sorts on it).
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def stats_from_dict(data: dict[str, Any] | None) -> ReplyStats | None:
    """A ReplyStats from its saved dict (derived keys such as cpu_total_s are recomputed)."""
    if data is None:
        return None
    from localllm.runtime.metrics import ReplyStats

    names = {f.name for f in dataclasses.fields(ReplyStats)}
    return ReplyStats(**{k: v for k, v in data.items() if k in names})


def title_from(text: str) -> str:
    """A title from the first user message: its first line, cut at a word near TITLE_CHARS."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if len(line) <= TITLE_CHARS:
        return line
    return line[:TITLE_CHARS].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"


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
                for statement in _statements(MIGRATIONS[step]):
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
        conv = self.load(conversation_id)
        doc = {"format": "localllm-conversation", "version": 1, "id": conv.id, "title": conv.title,
               "created": conv.created, "updated": conv.updated, "model": conv.model,
               "system_prompt": conv.system_prompt,
               "messages": [dataclasses.asdict(t) for t in conv.turns],
               "comparisons": [dataclasses.asdict(c) for c in conv.comparisons]}
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    def export_markdown(self, conversation_id: int) -> str:
        """The conversation as Markdown: each reply under its model's name, with its stats line."""
        from localllm.chat.report import stats_line

        conv = self.load(conversation_id)
        out = [f"# {conv.title or 'Untitled conversation'}", "",
               f"- Created: {conv.created}", f"- Updated: {conv.updated}"]
        if conv.model:
            out.append(f"- Model: {model_label(conv.model)}")
        if conv.system_prompt:
            out.append(f"- System prompt: {conv.system_prompt.strip()}")
        pending = list(conv.comparisons)  # each goes after the message it followed
        out += _comparisons_markdown([c for c in pending if c.after_seq <= 0])
        pending = [c for c in pending if c.after_seq > 0]
        for t in conv.turns:
            if t.role == "assistant":
                out += ["", f"## Assistant · {model_label(t.model) if t.model else 'model'}"]
            else:
                out += ["", f"## {t.role.capitalize()}"]
            out += ["", t.content.rstrip() or "*(empty)*"]
            stats = stats_from_dict(t.stats)
            if stats is not None:
                note = "" if t.status == "ok" else f" · {t.status}"
                out += ["", f"*{stats_line(stats)}{note}*"]
            elif t.status != "ok":
                out += ["", f"*{t.status}*"]
            out += _comparisons_markdown([c for c in pending if c.after_seq <= t.seq])
            pending = [c for c in pending if c.after_seq > t.seq]
        out += _comparisons_markdown(pending)  # after a message since removed (a regenerated reply)
        return "\n".join(out) + "\n"

    def export_to_file(self, conversation_id: int, path: str | Path) -> Path:
        """Write an export (.json: JSON, anything else: Markdown) atomically; returns the path."""
        path = Path(path)
        text = (self.export_json if path.suffix.lower() == ".json" else self.export_markdown)(conversation_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".export-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def _comparisons_markdown(comparisons: list[SavedComparison]) -> list[str]:
    """Each comparison as a section: the prompt, then each model's reply with its figures or error."""
    from localllm.chat.report import stats_line

    out: list[str] = []
    for c in comparisons:
        out += ["", f"## Comparison · {len(c.results)} models", "", "> " + c.prompt.strip().replace("\n", "\n> ")]
        for r in c.results:
            name = r.get("model_name") or r.get("spec") or "model"
            details = ", ".join(str(x) for x in (r.get("quant"), r.get("spec")) if x and x != name)
            out += ["", f"### {name}" + (f" ({details})" if details else "")]
            if r.get("error"):
                out += ["", f"*Error: {r['error']}*"]
            elif r.get("status") == "cancelled":
                out += ["", "*cancelled before it ran*"]
                continue
            if r.get("text") or not r.get("error"):
                out += ["", (r.get("text") or "").rstrip() or "*(empty)*"]
            stats = stats_from_dict(r.get("stats"))
            if stats is not None:
                status = r.get("status") or "ok"
                note = "" if status in ("ok", "error") else f" · {status}"
                out += ["", f"*{stats_line(stats)}{note}*"]
    return out


def model_label(model: dict[str, Any]) -> str:
    """'SmolLM2 (Q4_1, llama_cpp)' from a saved ModelInfo dict."""
    details = [str(model[k]) for k in ("quant", "backend") if model.get(k)]
    name = model.get("name") or model.get("path") or "model"
    return f"{name} ({', '.join(details)})" if details else str(name)


def export_filename(summary_or_conv: Any, suffix: str) -> str:
    """A file name for an export: the title made safe, then the id ('lighthouses-12.md')."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", summary_or_conv.title or "conversation").strip("-").lower()[:40]
    return f"{slug or 'conversation'}-{summary_or_conv.id}{suffix}"


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (executescript would COMMIT our transaction)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
