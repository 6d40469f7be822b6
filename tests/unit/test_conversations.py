"""The conversation store: create, append, list, load, rename, delete, export; the schema; and a
real process SIGKILLed mid-reply leaves a database holding every completed turn."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from localllm.backends.base import ModelInfo
from localllm.chat.conversation_export import export_filename
from localllm.chat.conversation_records import ConversationNotFound, ConversationStoreError, title_from
from localllm.chat.conversation_schema import SCHEMA_VERSION
from localllm.chat.conversations import ConversationStore, default_db_path
from localllm.chat.session import Turn
from localllm.runtime.metrics import ReplyStats

REPO = Path(__file__).resolve().parents[2]
MODEL = ModelInfo("SmolLM2-135M-Instruct", "/models/smol.gguf", "llama_cpp", "Q4_1", n_ctx=2048)
OTHER = ModelInfo("Qwen2.5-0.5B", "/models/qwen.gguf", "llama_cpp", "Q8_0", n_ctx=4096)


def stats(tokens: int, rate: float) -> ReplyStats:
    return ReplyStats(wall_s=1.5, cpu_user_s=2.0, cpu_sys_s=0.1, ttft_s=0.2, prompt_tokens=30,
                      completion_tokens=tokens, prefill_tok_s=300.0, decode_tok_s=rate, rss_peak_mib=180.0,
                      finish_reason="stop", live=False)


@pytest.fixture
def store(tmp_path) -> ConversationStore:
    with ConversationStore(tmp_path / "conversations.db") as s:
        yield s


def chat(store: ConversationStore, first: str = "What is a lighthouse?") -> int:
    cid = store.create(model=MODEL, system_prompt="Be brief.")
    store.append_turn(cid, Turn("user", first))
    store.append_turn(cid, Turn("assistant", "A tower with a light.", stats(6, 95.5)), model=MODEL)
    store.append_turn(cid, Turn("user", "And a lightship?"))
    store.append_turn(cid, Turn("assistant", "A ship that does the same.", stats(7, 40.25), "stopped"),
                      model=OTHER)
    return cid


def test_default_path_is_in_the_data_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "conversations.db"
    with ConversationStore() as s:
        s.create("x")
    assert (tmp_path / "conversations.db").exists()


def test_create_append_load(store) -> None:
    cid = chat(store)
    conv = store.load(cid)
    assert conv.title == "What is a lighthouse?"  # named after the first user message
    assert conv.system_prompt == "Be brief."
    assert [(t.seq, t.role) for t in conv.turns] == [(1, "user"), (2, "assistant"), (3, "user"), (4, "assistant")]
    reply = conv.turns[1]
    assert reply.model["name"] == MODEL.name and reply.stats["decode_tok_s"] == 95.5
    assert reply.stats["cpu_total_s"] == pytest.approx(2.1)  # to_dict()'s derived numbers are kept
    assert conv.turns[3].status == "stopped" and conv.turns[3].model["quant"] == "Q8_0"
    assert conv.turns[0].stats is None and conv.turns[0].model is None
    assert conv.model["name"] == OTHER.name  # the latest reply's model
    turns = conv.session_turns()
    assert isinstance(turns[1], Turn) and isinstance(turns[1].stats, ReplyStats)
    assert turns[1].stats.decode_tok_s == 95.5 and turns[3].status == "stopped"


def test_list_newest_first_with_counts(store) -> None:
    a = chat(store, "first chat")
    b = store.create("empty one")
    c = chat(store, "third chat")
    store.append_turn(a, Turn("user", "back to the first"))  # now the most recently updated
    listed = store.list()
    assert [x.id for x in listed] == [a, c, b]
    assert [x.message_count for x in listed] == [5, 4, 0]
    assert listed[0].title == "first chat" and listed[2].title == "empty one"
    assert listed[0].model["name"] == OTHER.name and listed[2].model is None


def test_rename_and_delete(store) -> None:
    a, b = chat(store), chat(store)
    store.rename(a, "  Lighthouses  ")
    assert store.load(a).title == "Lighthouses"
    store.append_turn(a, Turn("user", "a later message does not rename it"))
    assert store.load(a).title == "Lighthouses"
    store.delete(a)
    assert [x.id for x in store.list()] == [b]
    with pytest.raises(ConversationNotFound):
        store.load(a)
    rows = store._query("SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (a,))
    assert rows[0][0] == 0  # the messages went with it
    for action in (lambda: store.rename(a, "x"), lambda: store.delete(a),
                   lambda: store.append_turn(a, Turn("user", "x"))):
        with pytest.raises(ConversationNotFound, match=str(a)):
            action()


def test_regenerate_replaces_the_last_reply(store) -> None:
    cid = chat(store)
    assert store.remove_last_turn(cid)  # the session dropped its last reply to answer again
    store.append_turn(cid, Turn("assistant", "Another answer.", stats(3, 90.0)), model=MODEL)
    turns = store.load(cid).turns
    assert [(t.seq, t.content) for t in turns[-2:]] == [(3, "And a lightship?"), (4, "Another answer.")]
    store.append_turn(cid, Turn("user", "Thanks"))
    assert not store.remove_last_turn(cid)  # the latest is a user turn: nothing removed
    assert len(store.load(cid).turns) == 5


def test_export_markdown_has_each_reply_with_model_and_stats(store) -> None:
    text = store.export_markdown(chat(store))
    assert text.startswith("# What is a lighthouse?\n")
    assert "System prompt: Be brief." in text
    assert "## User\n\nWhat is a lighthouse?" in text
    assert "## Assistant · SmolLM2-135M-Instruct (Q4_1, llama_cpp)\n\nA tower with a light." in text
    assert "## Assistant · Qwen2.5-0.5B (Q8_0, llama_cpp)" in text
    assert "6 tok · decode 95.5 tok/s" in text and "7 tok · decode 40.2 tok/s" in text
    assert "· stopped*" in text


def test_export_json_has_each_reply_with_model_and_stats(store, tmp_path) -> None:
    cid = chat(store)
    doc = json.loads(store.export_json(cid))
    assert doc["format"] == "localllm-conversation" and doc["title"] == "What is a lighthouse?"
    messages = doc["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["model"]["name"] == MODEL.name and messages[1]["stats"]["completion_tokens"] == 6
    assert messages[3]["model"]["quant"] == "Q8_0" and messages[3]["status"] == "stopped"
    out = store.export_to_file(cid, tmp_path / "out" / "chat.json")
    assert json.loads(out.read_text()) == doc
    md = store.export_to_file(cid, tmp_path / "out" / "chat.md")
    assert md.read_text() == store.export_markdown(cid)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chat.json", "chat.md"]


def test_titles_and_file_names() -> None:
    assert title_from("  Hello there\nsecond line") == "Hello there"
    long = title_from("word " * 40)
    assert len(long) <= 61 and long.endswith("…")

    class Summary:
        id, title = 12, "Lighthouses & ships: a/b?"
    assert export_filename(Summary, ".md") == "lighthouses-ships-a-b-12.md"


def test_schema_is_versioned_and_in_wal_mode(store, tmp_path) -> None:
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
    assert cols == {"id", "conversation_id", "seq", "role", "content", "status", "stats", "model", "created"}
    cols = {r[1] for r in db.execute("PRAGMA table_info(conversations)")}
    assert cols == {"id", "title", "created", "updated", "model", "system_prompt"}
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    store.close()
    with pytest.raises(ConversationStoreError, match="newer localllm"):
        ConversationStore(store.path)


def test_reopening_keeps_everything(tmp_path) -> None:
    path = tmp_path / "c.db"
    with ConversationStore(path) as s:
        cid = chat(s)
    with ConversationStore(path) as s:
        assert len(s.load(cid).turns) == 4


def test_a_damaged_file_is_named(tmp_path) -> None:
    path = tmp_path / "conversations.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConversationStoreError) as err:
        ConversationStore(path)
    assert str(path) in str(err.value) and "move it aside" in str(err.value)


def test_appends_from_threads_keep_seq_unique(store) -> None:
    cid = store.create("busy")

    def writer(n: int) -> None:
        for i in range(20):
            store.append_turn(cid, Turn("user", f"{n}-{i}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [t.seq for t in store.load(cid).turns] == list(range(1, 81))


# A chat that saves like the app does: the user turn when sent, the reply when finished.
CHILD = textwrap.dedent("""
    import sys, time
    from localllm.backends.base import ModelInfo
    from localllm.chat.conversations import ConversationStore
    from localllm.runtime.metrics import ReplyStats
    from localllm.chat.session import Turn

    store = ConversationStore(sys.argv[1])
    mode = sys.argv[2]
    cid = store.create(system_prompt="sys")
    model = ModelInfo("m", "/m.gguf", "llama_cpp", "Q4_1")
    print("conversation", cid, flush=True)
    i = 0
    while True:
        i += 1
        store.append_turn(cid, Turn("user", f"question {i}"))
        print("user", i, flush=True)
        if mode == "mid-reply" and i == 4:
            print("generating", flush=True)
            time.sleep(600)  # the reply is being generated when the kill lands
        reply = f"answer {i} " + "x" * 4000
        store.append_turn(cid, Turn("assistant", reply, ReplyStats(wall_s=i, completion_tokens=i)), model=model)
        print("assistant", i, flush=True)
""")


def run_and_kill(db: Path, mode: str, until: str) -> list[str]:
    """Start the child, read its lines until `until`, SIGKILL it; returns the lines read."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db), mode], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == until:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, lines[-3:]
    return lines


def check_whole(db: Path) -> list:
    """The database opens, passes SQLite's integrity check, and every saved turn is complete."""
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with ConversationStore(db) as store:
        [summary] = store.list()
        turns = store.load(summary.id).turns
    assert [t.seq for t in turns] == list(range(1, len(turns) + 1))
    for n, t in enumerate(turns):
        i = n // 2 + 1
        if t.role == "user":
            assert n % 2 == 0 and t.content == f"question {i}"
        else:
            assert n % 2 == 1 and t.content == f"answer {i} " + "x" * 4000
            assert t.stats["completion_tokens"] == i and t.model["name"] == "m"
    return turns


def test_sigkill_mid_reply_keeps_every_completed_turn(tmp_path) -> None:
    db = tmp_path / "conversations.db"
    run_and_kill(db, "mid-reply", until="generating")
    turns = check_whole(db)
    # three whole exchanges and the question being answered; only the unfinished reply is lost
    assert [t.role for t in turns] == ["user", "assistant"] * 3 + ["user"]
    assert turns[-1].content == "question 4"


def test_sigkill_while_writing_keeps_every_reported_turn(tmp_path) -> None:
    db = tmp_path / "conversations.db"
    lines = run_and_kill(db, "stream", until="assistant 40")  # the child keeps writing until the kill
    reported = sum(1 for line in lines if line.startswith(("user ", "assistant ")))
    turns = check_whole(db)
    assert len(turns) >= reported == 80


def _locked(path: Path) -> sqlite3.Connection:
    """Another program holding the database's write lock, as a second localllm mid-write does."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


def test_a_locked_database_is_a_clear_error_and_the_next_write_works(tmp_path) -> None:
    with ConversationStore(tmp_path / "c.db", busy_timeout_s=0.1) as store:
        cid = store.create(title="t")
        other = _locked(store.path)
        with pytest.raises(ConversationStoreError, match="could not be saved to .*locked.*next save"):
            store.append_message(cid, "user", "hello")
        other.execute("ROLLBACK")
        other.close()
        store.append_message(cid, "user", "hello")  # rolled back cleanly: no transaction left open
        assert [t.content for t in store.load(cid).turns] == ["hello"]


def test_a_failed_commit_is_rolled_back_so_later_writes_still_work(tmp_path) -> None:
    """COMMIT itself fails (a constraint checked at commit: a deferred foreign key)."""
    with ConversationStore(tmp_path / "c.db") as store:
        cid = store.create(title="t")
        with pytest.raises(ConversationStoreError, match="could not be saved"):
            with store._tx() as db:
                db.execute("PRAGMA defer_foreign_keys = ON")
                db.execute("INSERT INTO messages (conversation_id, seq, role, content, status, created) "
                           "VALUES (999, 1, 'user', 'x', 'ok', 'now')")
        assert not store._db.in_transaction
        store.append_message(cid, "user", "after")
        assert [t.content for t in store.load(cid).turns] == ["after"]


def test_the_recorder_keeps_what_it_could_not_save_and_writes_it_first_next_time(tmp_path) -> None:
    from localllm.chat.recorder import Recorder
    from localllm.chat.session import ChatSession

    store = ConversationStore(tmp_path / "c.db", busy_timeout_s=0.1)
    recorder = Recorder(store)
    session = ChatSession()
    session.history = [Turn("user", "one"), Turn("assistant", "reply one")]
    assert recorder.user_turn(session) is None
    other = _locked(store.path)
    warning = recorder.reply(session)
    assert warning and "could not be saved" in warning and "locked" in warning and "1 message" in warning
    other.execute("ROLLBACK")
    other.close()
    session.history += [Turn("user", "two")]
    assert recorder.user_turn(session) is None
    turns = store.load(recorder.conversation_id).turns
    assert [t.content for t in turns] == ["one", "reply one", "two"]  # in order, nothing lost
    store.close()
