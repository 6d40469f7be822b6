"""Side-by-side timing runs: a real plan on the CPU (the embedded GGUF and a Q8_0 made by llama.cpp's
quantizer), failures as rows, cancel, exports that parse back, save/compare, the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import threading

import psutil
import pytest

from localllm.bench import export as bench_export
from localllm.bench import results as bench_results
from localllm.bench.errors import BenchError
from localllm.bench.plan import BenchConfig, BenchPlan, load_prompts
from localllm.bench.results import COLUMN_KEYS, BenchResult, Summary
from localllm.bench.runs import run_plan
from localllm.bench.worker import fit_prompt
from localllm.cli import main as cli
from localllm.config import SamplingParams
from localllm.machine import gpu as nvml
from localllm.quantize.gguf import requantize_gguf
from tests.gguf_files import bad_arch_copy

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier

PPL_TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
            "must be in want of a wife. However little known the feelings or views of such a man may be "
            "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
            "surrounding families, that he is considered the rightful property of some one or other of "
            "their daughters.")
PER_REP = [k for k in COLUMN_KEYS if k not in ("size_mib", "perplexity", "vram_peak_mib", "bw_pct")]


@pytest.fixture(scope="module")
def q8(model_path, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("bench") / "SmolLM2-135M-Instruct.Q8_0.gguf"
    return requantize_gguf(model_path, out, "Q8_0").path


@pytest.fixture(scope="module")
def real(q8) -> BenchResult:
    # One thread each: llama.cpp's spinning thread pool crawls when a shared 2-core CPU is busy.
    plan = BenchPlan([BenchConfig("embedded", n_threads=1), BenchConfig(q8, n_threads=1)],
                     prompt_tokens=30, gen_tokens=32, reps=2, warmup=1, perplexity=True,
                     perplexity_text=PPL_TEXT)
    seen = []
    result = run_plan(plan, progress=seen.append)
    result.phases = [(p.index, p.phase) for p in seen]  # type: ignore[attr-defined]
    return result


def test_real_plan_fills_every_column(real: BenchResult) -> None:
    assert [r.status for r in real.rows] == ["ok", "ok"], [r.reason for r in real.rows]
    assert [r.quant for r in real.rows] == ["Q4_1", "Q8_0"]
    for row in real.rows:
        assert set(row.columns) == set(COLUMN_KEYS)
        assert len(row.reps) == 2 and row.first_load_s > 0
        for key in PER_REP:
            s = row.columns[key]
            assert s.n == 2 and s.mean is not None and s.sd is not None, key
            assert s.p50 is not None and s.p90 is not None
        assert row.columns["decode_tok_s"].mean > 0
        assert row.columns["size_mib"].mean == pytest.approx(row.size_bytes / 2**20)
        assert row.columns["perplexity"].mean > 1
        vram = row.columns["vram_peak_mib"]  # absent without NVML (never 0); measured with it
        assert vram.n == 0 if nvml.unavailable_reason() else (vram.n >= 1 and vram.mean >= 0)
        if real.manifest["hardware"]["memory_bandwidth_gb_s"]:
            assert 0 < row.columns["bw_pct"].mean
        assert row.prompt_tokens == 30 and row.notes == []  # the prompt was fitted exactly
        assert row.rss_hwm_mib >= row.columns["rss_peak_mib"].max * 0.99


def test_every_repetition_is_consistent(real: BenchResult) -> None:
    cores = psutil.cpu_count()
    for row in real.rows:
        for rep in row.reps:
            assert rep["prompt_tokens"] == 30 and rep["cached_tokens"] == 0  # a fresh cache each time
            assert rep["completion_tokens"] == 32
            assert rep["cpu_total_s"] <= rep["wall_s"] * cores + 0.05
            assert rep["ttft_s"] < rep["wall_s"]
            assert rep["latency_mean_ms"] == pytest.approx(1000 / rep["decode_tok_s"])


def test_progress_and_manifest(real: BenchResult) -> None:
    phases = real.phases  # type: ignore[attr-defined]
    assert phases[0] == (0, "start") and phases[-1] == (1, "done")
    assert phases.count((0, "rep")) == 2 and phases.count((0, "warmup")) == 1
    m = real.manifest
    assert m["hardware"]["cores_logical"] >= 1 and m["hardware"]["cpu"]
    assert m["software"]["llama_cpp_python"] and m["software"]["python"]
    assert len(m["prompt_sha256"]) == 64 and m["seed"] == 42 and m["date"]
    assert m["plan"]["reps"] == 2
    assert {len(r.prompt_sha256) for r in real.rows} == {64}
    # the sampling every row used, with its sources: the app's defaults, length and seed from the plan
    assert m["sampling"]["temperature"] == {"value": SamplingParams().temperature, "from": "default"}
    assert m["sampling"]["max_tokens"]["from"] == "bench_plan" and m["sampling"]["seed"]["value"] == 42


def test_exports_parse_back(real: BenchResult) -> None:
    md = bench_export.parse_markdown(bench_export.to_markdown(real))
    assert [r["config"] for r in md] == [r.label for r in real.rows]
    for parsed, row in zip(md, real.rows, strict=True):
        mean, sd = bench_export.parse_cell(parsed["decode tok/s"])
        assert mean == pytest.approx(row.columns["decode_tok_s"].mean, rel=1e-3)
        assert sd == pytest.approx(row.columns["decode_tok_s"].sd, rel=1e-2, abs=1e-3)
        assert "peak VRAM MiB" not in parsed and "perplexity" in parsed

    seed = bench_export.parse_markdown(bench_export.to_markdown(real, "seed002"))
    assert list(seed[0]) == list(bench_export.SEED002_HEAD)
    assert float(seed[1]["tok/s"]) == pytest.approx(real.rows[1].columns["decode_tok_s"].mean, abs=1e-3)

    rows = bench_export.parse_csv(bench_export.to_csv(real))
    for parsed, row in zip(rows, real.rows, strict=True):
        assert parsed["label"] == row.label and parsed["status"] == "ok"
        for key in COLUMN_KEYS:
            assert parsed[f"{key}_mean"] == row.columns[key].mean
            assert parsed[f"{key}_sd"] == row.columns[key].sd

    again = bench_export.from_json(bench_export.to_json(real))
    assert again.to_dict() == json.loads(json.dumps(real.to_dict()))


def test_save_load_compare(real: BenchResult, tmp_path) -> None:
    path = bench_results.save(real)
    assert path.parent.name == "bench" and path.suffix == ".json"
    loaded = bench_results.load(path)
    deltas = bench_results.compare(loaded, real)
    assert {d.label for d in deltas} == {r.label for r in real.rows}
    assert all(d.delta == 0 for d in deltas if d.delta is not None)
    faster = BenchResult.from_dict(real.to_dict())
    faster.rows[0].columns["decode_tok_s"].mean *= 1.10
    delta = next(d for d in bench_results.compare(real, faster) if d.column == "decode_tok_s")
    assert delta.pct == pytest.approx(10.0)
    assert "+10.0%" in bench_export.compare_markdown([delta], "a", "b")


def test_bad_files_fail_as_rows_while_the_others_finish(model_path, tmp_path) -> None:
    junk = tmp_path / "corrupt.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 64)
    odd = bad_arch_copy(model_path, tmp_path / "odd-arch.gguf")
    plan = BenchPlan([BenchConfig(str(junk)), BenchConfig(odd), BenchConfig("embedded", n_threads=1)],
                     prompt_tokens=30, gen_tokens=8, reps=1, warmup=0)
    result = run_plan(plan)
    assert [r.status for r in result.rows] == ["failed", "failed", "ok"]
    assert "GGUF header is damaged" in result.rows[0].reason
    assert "llama.cpp" in result.rows[1].reason and "llamb" in result.rows[1].reason
    assert result.rows[2].columns["decode_tok_s"].mean > 0
    text = bench_export.to_markdown(result)
    assert "corrupt: failed: Cannot use model file" in text


def test_a_worker_killed_mid_plan_is_a_failed_row(q8) -> None:
    def progress(p) -> None:
        if p.index == 0 and p.phase == "loaded":  # as the OOM killer would
            for child in psutil.Process().children():
                if "localllm.runtime.worker_main" in " ".join(child.cmdline()):
                    child.send_signal(signal.SIGKILL)

    plan = BenchPlan([BenchConfig("embedded", n_threads=1), BenchConfig(q8, n_threads=1)],
                     prompt_tokens=30, gen_tokens=8, reps=1, warmup=0)
    rows = run_plan(plan, progress=progress).rows
    assert [r.status for r in rows] == ["failed", "ok"]
    assert "SIGKILL" in rows[0].reason and "out-of-memory" in rows[0].reason


def test_prompt_longer_than_the_context_or_unknown_backend_is_a_failed_row() -> None:
    plan = BenchPlan([BenchConfig("embedded", n_ctx=64), BenchConfig("x", backend="nope")],
                     prompt_tokens=60, gen_tokens=16, reps=1)
    rows = run_plan(plan).rows
    assert [r.status for r in rows] == ["failed", "failed"]
    assert "context holds 64" in rows[0].reason and "Unknown backend 'nope'" in rows[1].reason


def test_prompt_sets_builtin_and_from_a_file(tmp_path) -> None:
    assert len(load_prompts("short").prompts) >= 2 and load_prompts("long").filler
    text = tmp_path / "mine.txt"
    text.write_text("First prompt,\nsecond line.\n\nSecond prompt.\n")
    assert load_prompts(str(text)).prompts == ["First prompt, second line.", "Second prompt."]
    with pytest.raises(BenchError, match="Cannot read the prompt file"):
        load_prompts(str(tmp_path / "missing.txt"))
    assert BenchPlan.from_preset("llama-bench", []).prompt_tokens == 512


def test_zero_repetitions_are_refused() -> None:
    with pytest.raises(BenchError, match="at least 1"):
        run_plan(BenchPlan([BenchConfig()], reps=0))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["bench", "--reps", "0"]) == 1
    assert "Repetitions must be at least 1" in err.getvalue()


def test_cancel_mid_plan_keeps_finished_rows(q8) -> None:
    cancel = threading.Event()

    def progress(p) -> None:
        if p.index == 1 and p.phase == "rep" and p.rep == 1:
            cancel.set()

    one = {"n_threads": 1, "label": "same"}  # one thread: quick, even on a busy shared CPU
    plan = BenchPlan([BenchConfig("embedded", **one), BenchConfig(q8, n_threads=1), BenchConfig("embedded", **one)],
                     prompt_tokens=30, gen_tokens=8, reps=2, warmup=0)
    result = run_plan(plan, progress=progress, cancel=cancel)
    assert result.cancelled
    assert [r.status for r in result.rows] == ["ok", "cancelled", "skipped"]
    assert len(result.rows[0].reps) == 2 and len(result.rows[1].reps) == 1
    assert result.rows[1].columns["decode_tok_s"].n == 1
    assert [r.label for r in result.rows][::2] == ["same", "same #2"]  # two rows, told apart


def test_cli_prints_the_table_saves_and_compares(real: BenchResult, tmp_path, capsys) -> None:
    base = bench_results.save(real, tmp_path / "before.json")
    out = tmp_path / "run.csv"
    rc = cli.main(["bench", "-m", "embedded", "--reps", "1", "--warmup", "0", "--tokens", "8",
                   "--threads", "1", "--csv", "--out", str(out), "--compare", str(base)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "[1/1] SmolLM2-135M-Instruct.Q4_1 · 1 thread · rep 1/1" in captured.err
    assert "saved " in captured.err
    assert bench_export.parse_markdown(captured.out)[0]["status"] == "ok"
    assert bench_export.parse_csv(out.read_text())[0]["gen_tokens"] == 8
    assert "change %" in captured.out


def test_fit_prompt_hits_the_exact_count() -> None:
    def count(messages) -> int:  # a stand-in tokenizer: 3 template tokens + one per 4 characters
        return 3 + sum(math.ceil(len(m["content"]) / 4) for m in messages)

    fitted = fit_prompt(count, "sys", "short question?", "lorem ipsum dolor sit amet", 57)
    assert fitted.n_tokens == 57 == count(fitted.messages)
    with pytest.raises(BenchError, match="alone take"):
        fit_prompt(count, "a much longer system prompt than allowed", "q", "f", 5)


def test_summary_never_invents_a_stddev() -> None:
    assert Summary.of([]).mean is None
    one = Summary.of([2.0, None])
    assert one.mean == 2.0 and one.sd is None and one.n == 1
    two = Summary.of([1.0, 3.0])
    assert two.sd == pytest.approx(math.sqrt(2)) and two.p50 == 2.0


def test_cli_model_specs_pick_bitsandbytes_at_load(tmp_path) -> None:
    from localllm.cli.commands.bench import build_plan
    from localllm.models.ref import ModelRef

    assert (ModelRef.parse("/m/ckpt@nf4").text, ModelRef.parse("/m/ckpt@nf4").load_in) == ("/m/ckpt", "nf4")
    assert ModelRef.parse("http://h:1#org/m@x").load_in == "none"  # not a bnb suffix
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    args = cli.build_parser("localllm.cli.commands.bench").parse_args(["bench", "-m", f"{ckpt}@int8"])
    cfg = build_plan(args).configs[0]
    assert (cfg.model, cfg.backend, cfg.load_in) == (str(ckpt), "transformers", "int8")
    assert "bnb int8" in cfg.default_label()
    args = cli.build_parser("localllm.cli.commands.bench").parse_args(["bench", "-m", "embedded@nf4"])
    with pytest.raises(SystemExit, match="needs a checkpoint folder"):
        build_plan(args)
