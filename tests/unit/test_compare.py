"""Compare: one prompt on several models in sequence (the real embedded GGUF and a Q8_0 made from it),
a bad model as a result of its own, cancel, the models offered by default, and saving a comparison
with a conversation (a version 1 database still opens)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import psutil
import pytest

from localllm.backends.base import ModelInfo
from localllm.chat.compare import (
    CompareResult,
    Comparison,
    ModelDelta,
    ModelDone,
    default_specs,
    loaded_spec,
    parse_specs,
    run_comparison,
    save_comparison,
)
from localllm.chat.conversation_schema import SCHEMA_V1, statements
from localllm.chat.conversations import ConversationStore
from localllm.chat.recorder import Recorder
from localllm.chat.session import ChatSession, Turn
from localllm.config import LoadOptions, SamplingParams
from localllm.models.library import LibraryEntry
from localllm.quantize.gguf import requantize_gguf
from localllm.runtime.metrics import ReplyStats

slow = pytest.mark.slow  # real model workers: not in the quick tier

SHORT = SamplingParams(max_tokens=16, ignore_eos=True, seed=1, temperature=0.0)
OPTIONS = LoadOptions(context=512, threads=1)  # one thread: llama.cpp's pool crawls on a busy 2-core CPU


@pytest.fixture(scope="module")
def q8(model_path, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("compare") / "SmolLM2-135M-Instruct.Q8_0.gguf"
    return requantize_gguf(model_path, out, "Q8_0").path


def workers_alive(started_after: float = 0.0) -> list[psutil.Process]:
    """This process's model workers started after `started_after` (time.time()): workers that other
    tests' module fixtures keep are not this test's business."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "localllm.runtime.worker_main" in " ".join(child.cmdline()) and child.create_time() >= started_after:
                alive.append(child)
        except psutil.Error:
            pass
    return alive


@slow
def test_each_model_answers_in_turn_and_a_bad_one_is_its_own_error(q8, tmp_path) -> None:
    started = time.time() - 1  # create_time has a coarse clock
    missing = str(tmp_path / "missing.gguf")
    events = []
    result = run_comparison("Name a colour.", ["embedded", q8, missing], "Be brief.", SHORT,
                            on_event=events.append, load_options=OPTIONS)
    assert isinstance(result, Comparison) and result.prompt == "Name a colour." and not result.cancelled
    assert result.system_prompt == "Be brief." and result.sampling["max_tokens"] == 16
    first, second, bad = result.results
    assert [r.spec for r in result.results] == ["embedded", q8, missing]
    assert (first.quant, second.quant) == ("Q4_1", "Q8_0")
    for r in (first, second):
        assert r.error == "" and r.status == "length" and r.text
        assert r.stats["completion_tokens"] == 16 and r.stats["decode_tok_s"] > 0
        assert r.stats["ttft_s"] > 0 and r.stats["cpu_user_s"] is not None and r.stats["rss_peak_mib"] > 50
        assert isinstance(r.reply_stats, ReplyStats) and r.model_name.startswith("SmolLM2")
    assert bad.status == "error" and "missing.gguf" in bad.error and bad.stats is None and bad.text == ""
    # one after another: a model starts only when the one before is done (and its worker closed)
    order = [(type(e).__name__, e.index) for e in events if not isinstance(e, ModelDelta)]
    assert order == [("ModelStarting", 0), ("ModelReady", 0), ("ModelDone", 0),
                     ("ModelStarting", 1), ("ModelReady", 1), ("ModelDone", 1),
                     ("ModelStarting", 2), ("ModelDone", 2)]
    for i, r in enumerate(result.results):  # the streamed pieces are the reply
        assert "".join(e.text for e in events if isinstance(e, ModelDelta) and e.index == i) == r.text
    assert [e.result for e in events if isinstance(e, ModelDone)] == result.results
    assert workers_alive(started) == []
    # the whole comparison round-trips through its dict (what is saved)
    assert Comparison.from_dict(json.loads(json.dumps(result.to_dict()))) == result


@slow
def test_cancel_stops_the_reply_and_the_models_after_it() -> None:
    started = time.time() - 1
    cancel = threading.Event()

    def on_event(event) -> None:
        if isinstance(event, ModelDelta):
            cancel.set()  # as soon as the first model is writing

    long = SamplingParams(max_tokens=2000, ignore_eos=True, seed=1)
    result = run_comparison("Write an endless story.", ["embedded", "embedded"], "", long, on_event=on_event,
                            cancel=cancel, load_options=OPTIONS)
    first, second = result.results
    assert result.cancelled
    assert first.status == "stopped" and first.text and first.stats["completion_tokens"] < 2000
    assert second.status == "cancelled" and second.stats is None and second.text == ""
    assert workers_alive(started) == []


def test_specs_are_comma_separated() -> None:
    assert parse_specs(" embedded, /m/a.gguf ,, http://h:8080#llama ,") == [
        "embedded", "/m/a.gguf", "http://h:8080#llama"]
    assert parse_specs("  ") == []


def test_default_specs_are_the_loaded_model_then_two_other_ggufs(model_path, tmp_path) -> None:
    session = ChatSession()
    assert loaded_spec(session) is None
    session.model = ModelInfo("SmolLM2", model_path, "llama_cpp", "Q4_1")
    session._load_args = (model_path, LoadOptions(), "llama_cpp")
    assert loaded_spec(session) == "embedded"

    def gguf(name: str, source: str = "path", status: str = "ok", fmt: str = "gguf") -> LibraryEntry:
        path = model_path if source == "embedded" else str(tmp_path / name)
        return LibraryEntry(name, name, source, fmt, "Q8_0", 1, path, status=status)

    entries = [gguf("embedded", "embedded"), gguf("ckpt", fmt="safetensors"), gguf("broken.gguf", status="damaged"),
               gguf("a.gguf"), gguf("b.gguf"), gguf("c.gguf")]
    assert default_specs(session, entries=entries) == ["embedded", str(tmp_path / "a.gguf"),
                                                        str(tmp_path / "b.gguf")]
    # another model loaded: the embedded one is one of the others
    session._load_args = (str(tmp_path / "b.gguf"), LoadOptions(), "llama_cpp")
    session.model = ModelInfo("b", str(tmp_path / "b.gguf"), "llama_cpp", "Q8_0")
    assert default_specs(session, entries=entries) == [str(tmp_path / "b.gguf"), "embedded",
                                                        str(tmp_path / "a.gguf")]
    session._load_args = (str(tmp_path / "ckpt"), LoadOptions(quantization="nf4"), "transformers")
    assert loaded_spec(session) == f"{tmp_path / 'ckpt'}@nf4"
    session._load_args = ("http://127.0.0.1:8080#llama", LoadOptions(), "remote")
    assert loaded_spec(session) == "http://127.0.0.1:8080#llama"


def fixed_comparison() -> Comparison:
    stats = ReplyStats(wall_s=0.5, cpu_user_s=0.9, cpu_sys_s=0.02, ttft_s=0.1, prompt_tokens=20,
                       completion_tokens=16, decode_tok_s=61.5, rss_peak_mib=210.0, live=False).to_dict()
    return Comparison("Name a colour.", [
        CompareResult("embedded", "SmolLM2-135M-Instruct", "Q4_1", "Blue.", stats, "", "ok"),
        CompareResult("/m/q8.gguf", "SmolLM2-135M-Instruct", "Q8_0", "Red.", stats, "", "length"),
        CompareResult("/m/gone.gguf", "gone", "", "", None, "Model file not found: /m/gone.gguf", "error"),
    ], "Be brief.", {"max_tokens": 16})


def test_a_comparison_is_saved_with_the_conversation_and_exported(tmp_path) -> None:
    with ConversationStore(tmp_path / "c.db") as store:
        recorder = Recorder(store)
        session = ChatSession(system_prompt="Be brief.")
        # no conversation yet: one is made, named after the prompt
        assert save_comparison(recorder, session, fixed_comparison()) is None
        cid = recorder.conversation_id
        conv = store.load(cid)
        assert conv.title == "Name a colour." and conv.turns == []
        saved = conv.comparisons[0]
        assert saved.prompt == "Name a colour." and saved.after_seq == 0 and saved.sampling == {"max_tokens": 16}
        assert [r["quant"] for r in saved.results] == ["Q4_1", "Q8_0", ""]
        assert saved.results[0]["stats"]["decode_tok_s"] == 61.5 and saved.results[2]["error"].endswith("gone.gguf")
        # the chat goes on; a second comparison comes after its messages
        store.append_turn(cid, Turn("user", "Hi"))
        store.append_turn(cid, Turn("assistant", "Hello.", ReplyStats(completion_tokens=2, live=False)))
        assert save_comparison(recorder, session, fixed_comparison()) is None
        conv = store.load(cid)
        assert [c.after_seq for c in conv.comparisons] == [0, 2] and len(conv.turns) == 2
        assert [t.role for t in conv.session_turns()] == ["user", "assistant"]  # not part of the chat
        assert store.list()[0].message_count == 2
        md = store.export_markdown(cid)
        assert md.count("## Comparison · 3 models") == 2
        assert md.index("## Comparison") < md.index("## User") < md.index("## Assistant") < md.rindex("## Comparison")
        assert "### SmolLM2-135M-Instruct (Q8_0, /m/q8.gguf)" in md and "decode 61.5 tok/s" in md
        assert "*Error: Model file not found: /m/gone.gguf*" in md and "· length*" in md
        doc = json.loads(store.export_json(cid))
        assert len(doc["comparisons"]) == 2 and doc["comparisons"][1]["results"][1]["text"] == "Red."
        # deleted from the history screen meanwhile: a new conversation takes it
        store.delete(cid)
        assert store._query("SELECT COUNT(*) FROM comparisons")[0][0] == 0  # they went with it
        assert save_comparison(recorder, session, fixed_comparison()) is None
        conv = store.load(recorder.conversation_id)
        assert len(conv.comparisons) == 1 and conv.turns == [] and len(store.list()) == 1
    assert save_comparison(Recorder(None), session, fixed_comparison()) is None  # not saving: no error


def test_a_version_1_database_opens_and_keeps_its_conversations(tmp_path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for statement in statements(SCHEMA_V1):
        db.execute(statement)
    db.execute("INSERT INTO conversations (id, title, created, updated, system_prompt) "
               "VALUES (7, 'old chat', '2024-01-01T00:00:00.000000Z', '2024-01-01T00:00:00.000000Z', '')")
    db.execute("INSERT INTO messages (conversation_id, seq, role, content, created) "
               "VALUES (7, 1, 'user', 'hello', '2024-01-01T00:00:00.000000Z')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with ConversationStore(path) as store:
        conv = store.load(7)
        assert conv.title == "old chat" and [t.content for t in conv.turns] == ["hello"] and conv.comparisons == []
        assert "## Comparison" not in store.export_markdown(7)
        assert json.loads(store.export_json(7))["comparisons"] == []
        store.add_comparison(7, fixed_comparison())
        assert store.load(7).comparisons[0].after_seq == 1 and store.load(7).title == "old chat"
