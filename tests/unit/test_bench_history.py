"""Past timing runs: --history numbers, --compare across any two saved runs, --sqlite rows that
sqlite3 can query (one per run, configuration and level)."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from localllm.bench import history
from localllm.bench import results as bench_results
from localllm.bench.results import BenchResult, RowResult, build_manifest
from localllm.cli import main as cli
from localllm.errors import LocalLLMError


def _result(decode: list[float], label: str = "SmolLM2 · 2 threads", batch: int = 0) -> BenchResult:
    manifest = build_manifest({"seed": 42, "prompt_tokens": 30, "gen_tokens": 30}, ["p"], 20e9)
    row = RowResult(label, {"model": "embedded", "backend": "llama_cpp", "n_threads": 2, "n_gpu_layers": 0,
                            "batch": batch, "depth": 0}, model={"quant": "Q4_1", "n_threads": 2},
                    size_bytes=98 * 2**20, prompt_tokens=30, gen_tokens=30)
    row.reps = [{"decode_tok_s": d, "ttft_s": 0.05, "wall_s": 0.4, "load_s": 0.2, "cpu_user_s": 0.7} for d in decode]
    row.summarize(20e9)
    return BenchResult(manifest, [row])


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "home"))
    return tmp_path


def test_sqlite_rows_are_queryable_and_runs_append(home) -> None:
    db = home / "runs.sqlite"
    assert history.append_bench(db, _result([90.0, 110.0]), "run-a") == 1
    assert history.append_bench(db, _result([50.0], batch=16), "run-b") == 1
    rows = sqlite3.connect(db).execute(
        f"select run_id, quant, threads, batch, level, status, decode_tok_s, reps from {history.TABLE} "
        "order by run_id").fetchall()
    assert rows == [("run-a", "Q4_1", 2, 1, 1, "ok", 100.0, 2), ("run-b", "Q4_1", 2, 16, 1, "ok", 50.0, 1)]


def test_sqlite_takes_a_sweep_one_row_per_level(home) -> None:
    sweep = {"date": "2026-11-29T21:00:00", "model": "m", "plan": {"url": "http://127.0.0.1:9/v1", "gen_tokens": 16},
             "levels": [{"level": n, "completed": 8, "failed": 0, "req_s": 2.0 / n, "output_tok_s": 30.0,
                         "ttft": {"p50": 0.1 * n, "p90": 0.2 * n, "p99": 0.3 * n}, "tpot": {"p50": 0.02},
                         "meets_slo": n < 4} for n in (1, 2, 4)]}
    db = home / "s.sqlite"
    assert history.append_sweep(db, sweep, "sweep-1") == 3
    got = sqlite3.connect(db).execute(f"select level, round(ttft_p50_ms), meets_slo from {history.TABLE}").fetchall()
    assert got == [(1, 100.0, 1), (2, 200.0, 1), (4, 400.0, 0)]


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(home) -> None:
    junk = home / "notes.txt"
    junk.write_text("not a database, " * 100)
    with pytest.raises(LocalLLMError, match="SQLite"):
        history.append_bench(junk, _result([1.0]), "x")
    assert junk.read_text() == "not a database, " * 100


def test_history_numbers_and_compare_any_two(home, capsys) -> None:
    first = bench_results.save(_result([100.0]))
    second = bench_results.save(_result([120.0]))
    runs = history.saved_runs()
    assert [r.path for r in runs] == [first, second] and [r.number for r in runs] == [1, 2]
    assert history.resolve("-1") == second and history.resolve("1") == first
    with pytest.raises(LocalLLMError, match="lists 1 to 2"):
        history.resolve("7")
    assert cli.main(["bench", "--history"]) == 0
    out = capsys.readouterr().out
    assert "  1  " in out and "  2  " in out and "SmolLM2 · 2 threads" in out
    assert cli.main(["bench", "--compare", "1", "2"]) == 0
    table = capsys.readouterr().out
    assert "decode" in table and "+20" in table  # 100 -> 120 tok/s


def test_saved_json_keeps_every_repetition(home) -> None:
    path = bench_results.save(_result([90.0, 110.0]))
    reps = json.loads(path.read_text())["rows"][0]["reps"]
    assert [r["decode_tok_s"] for r in reps] == [90.0, 110.0]


def test_history_parses_only_the_newest_runs_and_keeps_their_numbers(home, monkeypatch, capsys) -> None:
    total = history.HISTORY_LIMIT + 30
    folder = bench_results.bench_dir()
    paths = []
    for n in range(total):  # names in the opposite order to when they were written: mtime decides
        path = folder / f"{total - n:04d}.json"
        path.write_text(json.dumps({"date": f"run {n}", "levels": [{"level": 1}]}))
        os.utime(path, ns=(n * 10**9, n * 10**9))
        paths.append(path)
    parsed = []
    real_loads = json.loads
    monkeypatch.setattr(history.json, "loads", lambda text, *a, **k: (parsed.append(text), real_loads(text))[1])
    runs = history.saved_runs()
    assert len(parsed) == history.HISTORY_LIMIT  # the 30 older files were never read
    assert [r.path for r in runs] == paths[-history.HISTORY_LIMIT:]
    assert [r.number for r in runs] == list(range(31, total + 1))  # numbered among all the files
    assert history.resolve("1") == paths[0] and history.resolve("-1") == paths[-1]
    assert len(parsed) == history.HISTORY_LIMIT  # resolving a number parses nothing
    table = history.history_table(runs)
    assert "runs 1 to 30 are older and not listed" in table and "run 30" in table and "run 29" not in table


def test_runs_saved_in_the_same_second_get_their_own_files(home, monkeypatch) -> None:
    monkeypatch.setattr(bench_results.time, "strftime", lambda fmt, *a: "20250101-000000")
    paths = [bench_results.write_json({"date": str(n)}) for n in range(3)]
    assert [p.name for p in paths] == ["20250101-000000.json", "20250101-000000-2.json", "20250101-000000-3.json"]
    assert [json.loads(p.read_text())["date"] for p in paths] == ["0", "1", "2"]  # none overwritten
    assert sorted(p.name for p in bench_results.bench_dir().iterdir()) == sorted(p.name for p in paths)  # no temp
