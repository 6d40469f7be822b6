"""Past timing runs: the saved JSON files under <home>/bench/ (listed by `localllm bench --history`,
named by number or path for --compare), and `--sqlite FILE`, which appends a run to a table that
sqlite3 can query: one row per (run, configuration, level), as llama-bench's `-o sql` does."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from localllm.bench.results import COLUMN_KEYS, BenchResult, bench_dir, load, write_json
from localllm.config.redact import redact
from localllm.errors import LocalLLMError

TABLE = "localllm_bench"
# run-level fields, then the configuration, then each column's mean (and the sweep's own figures)
FIELDS = ["run_id", "date", "kind", "cpu", "gpus", "localllm", "llama_cpp_python", "label", "model",
          "backend", "quant", "threads", "gpu_layers", "batch", "depth", "level", "status", "reason",
          "prompt_tokens", "gen_tokens", "reps", *COLUMN_KEYS,
          "completed", "failed", "req_s", "output_tok_s", "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms",
          "itl_p50_ms", "tpot_p50_ms", "tpot_p90_ms", "e2e_p50_s", "e2e_p90_s", "goodput_req_s", "meets_slo",
          # a sweep's: tokens received per request, and what the server itself counted over the level
          "mean_output_tokens", "server_kind", "server_prompt_tokens_reused", "server_kv_use_peak_pct",
          "server_preemptions", "server_queue_time_mean_ms", "server_prefill_time_mean_ms"]


@dataclass
class Saved:
    number: int  # 1 = the oldest; what --compare accepts
    path: Path
    date: str
    rows: str  # the configurations' labels
    kind: str


def sweep_data(result) -> dict:
    """A SweepResult as saved and printed: its date, then everything it holds (every request kept)."""
    import time

    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **result.to_dict()}


def save_sweep(result) -> tuple[Path, dict]:
    """Write a SweepResult as <home>/bench/sweep-<time>.json; returns the path and the data written,
    for --sqlite."""
    data = sweep_data(result)
    return write_json(data, prefix="sweep-"), data


# --history parses this many of the newest files: the folder is the user's record and is never pruned,
# so reading all of it would get slower with every run ever saved
HISTORY_LIMIT = 50


def _saved_files() -> list[Path]:
    """Every result file, oldest first, by a stat each (nothing parsed): the numbers --compare takes."""
    stamped = []
    for path in bench_dir().glob("*.json"):
        try:  # by when they were written: names from the same second sort "-2" before the first one
            stamped.append((path.stat().st_mtime_ns, path.name, path))
        except FileNotFoundError:
            continue
    return [path for *_, path in sorted(stamped)]


def saved_runs(limit: int | None = HISTORY_LIMIT) -> list[Saved]:
    """The newest `limit` results under <home>/bench/ (None: all), oldest first, numbered among all
    the files, so a number means the same file whether or not it is listed. Unreadable ones are left
    out of the list (their numbers stay taken)."""
    files = _saved_files()
    first = 0 if limit is None else max(0, len(files) - limit)
    runs = []
    for number, path in enumerate(files[first:], first + 1):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            labels = [r.get("label", "?") for r in data.get("rows", [])] or \
                     [f"concurrency {lv['level']}" for lv in data.get("levels", [])]
            date = data.get("manifest", {}).get("date") or data.get("date", "?")
        except (OSError, ValueError, AttributeError):
            continue
        runs.append(Saved(number, path, date, ", ".join(labels), "sweep" if "levels" in data else "bench"))
    return runs


def history_table(runs: list[Saved]) -> str:
    if not runs:
        return f"No saved runs in {bench_dir()} yet: `localllm bench` saves each run there.\n"
    lines = [f"{'#':>3}  {'date':<24}  {'kind':<5}  configurations", *(
        f"{r.number:>3}  {r.date:<24}  {r.kind:<5}  {r.rows[:90]}" for r in runs)]
    older = runs[0].number - 1
    if older:
        lines.insert(1, f"(runs 1 to {older} are older and not listed; --compare takes their numbers too)")
    return "\n".join(lines) + f"\n(files in {bench_dir()}; --compare takes a number or a path)\n"


def resolve(ref: str) -> Path:
    """A --compare argument: a history number (negative counts from the newest) or a file."""
    try:
        n = int(ref)
    except ValueError:
        return Path(ref).expanduser()
    files = _saved_files()
    if not files:
        raise LocalLLMError(f"There is no saved run {n}: {bench_dir()} holds none yet.")
    index = n - 1 if n > 0 else len(files) + n
    if not 0 <= index < len(files):
        raise LocalLLMError(f"There is no saved run {n}; `localllm bench --history` lists 1 to {len(files)}.")
    return files[index]


def load_ref(ref: str) -> BenchResult:
    return load(resolve(ref))


def _connect(path: str | Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(Path(path).expanduser())
        have = [r[1] for r in db.execute(f"PRAGMA table_info({TABLE})")]
        if not have:
            db.execute(f"CREATE TABLE {TABLE} ({', '.join(FIELDS)})")
        else:  # a table from an older version: add the columns it lacks, keep its rows
            for name in FIELDS:
                if name not in have:
                    db.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name}")
    except sqlite3.DatabaseError as exc:
        raise LocalLLMError(f"Cannot use {path} as an SQLite database ({exc}). Name a new file or an "
                            "SQLite file written by --sqlite.") from None
    return db


def _insert(db: sqlite3.Connection, rows: list[dict]) -> None:
    names = list(FIELDS)
    db.executemany(f"INSERT INTO {TABLE} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                   [[redact(row.get(n)) for n in names] for row in rows])


def append_bench(path: str | Path, result: BenchResult, run_id: str) -> int:
    """One row per configuration; returns how many were written."""
    man = result.manifest
    base = {"run_id": run_id, "date": man.get("date"), "kind": "bench", "cpu": man["hardware"].get("cpu"),
            "gpus": json.dumps(man["hardware"].get("gpus")) if man["hardware"].get("gpus") else None,
            "localllm": man["software"].get("localllm"), "llama_cpp_python": man["software"].get("llama_cpp_python")}
    rows = []
    for r in result.rows:
        cfg = r.config
        rows.append({**base, "label": r.label, "model": cfg.get("model"), "backend": cfg.get("backend"),
                     "quant": r.quant, "threads": (r.model or {}).get("n_threads") or cfg.get("n_threads"),
                     "gpu_layers": cfg.get("n_gpu_layers"), "batch": cfg.get("batch") or 1,
                     "depth": cfg.get("depth", 0), "level": 1, "status": r.status, "reason": r.reason or None,
                     "prompt_tokens": r.prompt_tokens, "gen_tokens": r.gen_tokens, "reps": len(r.reps),
                     **{k: s.mean for k, s in r.columns.items()}})
    with _connect(path) as db:
        _insert(db, rows)
    return len(rows)


def append_sweep(path: str | Path, sweep: dict, run_id: str) -> int:
    """One row per concurrency level of a sweep (SweepResult.to_dict())."""
    plan = sweep.get("plan", {})
    rows = []
    for lv in sweep.get("levels", []):
        def p(name: str, q: str, scale: float = 1000.0, lv: dict = lv) -> float | None:
            value = (lv.get(name) or {}).get(q)
            return value * scale if value is not None else None

        server = lv.get("server") or {}

        rows.append({"run_id": run_id, "date": sweep.get("date"), "kind": "sweep", "label": plan.get("url"),
                     "model": sweep.get("model"), "backend": "remote", "level": lv["level"],
                     "status": "ok" if not lv.get("failed") else "failed",
                     "prompt_tokens": plan.get("prompt_tokens"), "gen_tokens": plan.get("gen_tokens"),
                     "completed": lv.get("completed"), "failed": lv.get("failed"), "req_s": lv.get("req_s"),
                     "output_tok_s": lv.get("output_tok_s"), "ttft_p50_ms": p("ttft", "p50"),
                     "ttft_p90_ms": p("ttft", "p90"), "ttft_p99_ms": p("ttft", "p99"),
                     "itl_p50_ms": p("itl", "p50"), "tpot_p50_ms": p("tpot", "p50"),
                     "tpot_p90_ms": p("tpot", "p90"), "e2e_p50_s": p("e2e", "p50", 1.0),
                     "e2e_p90_s": p("e2e", "p90", 1.0), "goodput_req_s": lv.get("goodput_req_s"),
                     "meets_slo": lv.get("meets_slo"), "mean_output_tokens": lv.get("mean_output_tokens"),
                     "server_kind": server.get("kind"),
                     "server_prompt_tokens_reused": server.get("prompt_tokens_reused"),
                     "server_kv_use_peak_pct": server.get("kv_use_peak_pct"),
                     "server_preemptions": server.get("preemptions"),
                     "server_queue_time_mean_ms": server.get("queue_time_mean_ms"),
                     "server_prefill_time_mean_ms": server.get("prefill_time_mean_ms")})
    with _connect(path) as db:
        _insert(db, rows)
    return len(rows)
