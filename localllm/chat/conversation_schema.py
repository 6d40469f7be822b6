"""The conversation database's schema: one SQL script per version, run in order by
ConversationStore when it opens a database (PRAGMA user_version says which have run)."""

from __future__ import annotations

SCHEMA_VERSION = 2

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


def statements(script: str) -> list[str]:
    """Split a schema script into statements (executescript would COMMIT our transaction)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
