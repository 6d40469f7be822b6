"""Secrets stay where the user put them (issue 21, item 9): the API key goes only to a server the user
named, a URL's user:pass@ never reaches a file, an export or a table, bench CSV cells cannot run as
spreadsheet formulas, and a reply's terminal escape codes are not run by `localllm chat`."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import pytest

from localllm.backends.base import ModelInfo
from localllm.bench import export as bench_export
from localllm.bench import history
from localllm.bench import results as bench_results
from localllm.bench.results import BenchResult, RowResult, Summary, build_manifest
from localllm.chat.conversations import ConversationStore
from localllm.chat.session import Turn
from localllm.config.redact import redact_text
from localllm.config.settings import Settings, load_settings, save_settings
from localllm.models.endpoints import discover, list_models
from localllm.models.ref import ModelRef
from tests.recording_server import MODEL, RecordingServer

KEY = "sk-test-do-not-leak-7d1f"
PASSWORD = "hunter2-pw-91c"
SERVER = f"http://alice:{PASSWORD}@127.0.0.1:8080/v1"


def _bytes_under(folder: Path) -> bytes:
    """Every byte of every file under `folder` (a database and its -wal/-journal too)."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


# -- the API key ---------------------------------------------------------------------------------------
def test_discovery_sends_no_key_and_a_named_server_gets_it(monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_API_KEY", KEY)
    with RecordingServer() as srv:
        found = discover({srv.port: "something on a usual port"})
        assert [f.models for f in found] == [[MODEL]]  # it was asked, and answered
        assert srv.requests and KEY not in srv.headers_seen()  # ... without the key
        srv.requests.clear()
        assert list_models(srv.url) == [MODEL]  # a server the user named (or saved) gets it
        assert f"Bearer {KEY}" in srv.headers_seen()


# -- a URL's credentials -------------------------------------------------------------------------------
@pytest.mark.parametrize("text,want", [
    (f"http://alice:{PASSWORD}@host:8080/v1#m", "http://host:8080/v1#m"),
    (f"https://{PASSWORD}@host/v1", "https://host/v1"),
    (f"http://host:1/v1?api_key={PASSWORD}&x=1", "http://host:1/v1?api_key=REDACTED&x=1"),
    (f"failed at http://a:{PASSWORD}@h:1/v1: refused", "failed at http://h:1/v1: refused"),
    ("/models/q4.gguf", "/models/q4.gguf"),
    ("user@example.com asked", "user@example.com asked"),  # no scheme: not a URL's userinfo
])
def test_redact_text(text, want) -> None:
    assert redact_text(text) == want


def test_settings_file_never_holds_a_url_password(tmp_path) -> None:
    path = tmp_path / "settings.toml"
    save_settings(Settings(model=SERVER + "#m", endpoints=[SERVER, "http://127.0.0.1:1234"]), path)
    assert PASSWORD.encode() not in path.read_bytes() and b"alice" not in path.read_bytes()
    back = load_settings(path)
    assert back.model == "http://127.0.0.1:8080/v1#m"
    assert back.endpoints == ["http://127.0.0.1:8080/v1", "http://127.0.0.1:1234"]


def test_conversation_db_and_exports_never_hold_a_url_password(tmp_path) -> None:
    model = ModelInfo(MODEL, SERVER, "remote", "server", extra={"models": [MODEL]})
    db_dir, out_dir = tmp_path / "db", tmp_path / "out"
    db_dir.mkdir()
    with ConversationStore(db_dir / "conversations.db") as store:
        cid = store.create(model=model)
        store.append_turn(cid, Turn("user", "hi"))
        store.append_turn(cid, Turn("assistant", "hello"), model=model)
        store.add_comparison(cid, {"prompt": "hi", "results": [{"spec": SERVER + "#m", "model_name": SERVER,
                                                                  "text": "hello", "status": "ok"}]})
        for suffix in ("json", "md"):
            store.export_to_file(cid, out_dir / f"c.{suffix}")
        assert store.load(cid).model["path"] == "http://127.0.0.1:8080/v1"  # the rest is kept
    assert PASSWORD.encode() not in _bytes_under(db_dir)
    assert PASSWORD.encode() not in _bytes_under(out_dir) and _bytes_under(out_dir)


def _server_result(label: str | None = None, reason: str = "", quant: str = "server",
                   columns: dict | None = None) -> BenchResult:
    manifest = build_manifest({"seed": 42, "prompt_tokens": 30, "gen_tokens": 30}, ["p"], 20e9)
    ref = ModelRef.parse(SERVER + "#m")
    row = RowResult(label if label is not None else ref.name, {"model": ref.text, "backend": "remote"},
                    reason=reason, model={"path": SERVER, "quant": quant, "name": MODEL})
    row.reps = [{"decode_tok_s": 50.0, "ttft_s": 0.05, "wall_s": 0.4}]
    row.summarize(None)
    row.columns.update(columns or {})
    return BenchResult(manifest, [row])


def test_bench_files_and_exports_never_hold_a_url_password(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "home"))
    result = _server_result(reason=f"refused by {SERVER}")
    bench_results.save(result)
    history.append_bench(tmp_path / "home" / "runs.sqlite", result, "run-1")
    exports = [bench_export.to_csv(result), bench_export.to_json(result), bench_export.to_markdown(result)]
    assert PASSWORD.encode() not in _bytes_under(tmp_path / "home")
    for text in exports:
        assert PASSWORD not in text and "127.0.0.1:8080" in text  # the server is still named
    rows = sqlite3.connect(tmp_path / "home" / "runs.sqlite").execute(
        f"select model, label from {history.TABLE}").fetchall()
    assert rows == [("http://127.0.0.1:8080/v1#m", "http://127.0.0.1:8080/v1#m")]


def test_csv_text_cells_cannot_be_formulas_and_numbers_stay_numbers() -> None:
    hostile = {"label": "=HYPERLINK(\"http://x\",\"y\")", "reason": "+cmd|' /C calc'!A0", "quant": "@SUM(A1)"}
    result = _server_result(**hostile, columns={"decode_tok_s": Summary(mean=-1.5, n=1)})
    text = bench_export.to_csv(result)
    row = next(csv.DictReader(io.StringIO(text, newline="")))
    for key, value in hostile.items():
        assert row[key] == "'" + value  # a spreadsheet shows it as text
    assert row["decode_tok_s_mean"] == "-1.5"  # a negative number is a number, not a formula
    back = bench_export.parse_csv(text)[0]
    assert {k: back[k] for k in hostile} == hostile and back["decode_tok_s_mean"] == -1.5
    for label, want in (("\tx", "'\tx"), ("-x", "'-x"), ("\rx", "'\nx")):  # a lone CR would split the row
        row = next(csv.DictReader(io.StringIO(bench_export.to_csv(_server_result(label=label)), newline="")))
        assert row["label"] == want
