"""`localllm bench --batch` and `--depth` on the embedded model through the CLI: seed 002's batch rows
(time per decode step, B x tokens / decode time) and decode with the context already filled."""

from __future__ import annotations

import json

import pytest

from localllm.cli import main as cli

pytestmark = pytest.mark.slow  # real model workers


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))


def _run(capsys, *argv: str) -> dict:
    rc = cli.main(["bench", "-m", "embedded", "--threads", "2", "--reps", "1", "--warmup", "0", "--tokens", "8",
                   "--json", "--no-save", *argv])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    return json.loads(out)


def test_batch_rows_time_each_decode_step(capsys) -> None:
    data = _run(capsys, "--batch", "1,4", "--prompt-tokens", "24")
    rows = data["rows"]
    assert [r["config"]["batch"] for r in rows] == [1, 4] and all(r["status"] == "ok" for r in rows)
    for row in rows:
        rep = row["reps"][0]
        assert rep["batch"] == row["config"]["batch"] and len(rep["step_s"]) == 7  # 8 tokens: 7 steps after the first
        steps = sum(rep["step_s"])
        # tok/s is B x (tokens - 1) / decode time, latency the mean step: seed 002's meaning
        assert rep["decode_tok_s"] == pytest.approx(rep["batch"] * 7 / steps, rel=0.02)
        assert row["columns"]["latency_mean_ms"]["mean"] == pytest.approx(1000 * steps / 7, rel=0.02)
        assert rep["cpu_total_s"] > 0 and rep["rss_peak_mib"] > 50
    assert "batch 4" in rows[1]["label"]


def test_depth_rows_decode_after_a_filled_context(capsys) -> None:
    data = _run(capsys, "--depth", "0,1024", "--prompt-tokens", "30")
    shallow, deep = data["rows"]
    assert shallow["status"] == deep["status"] == "ok", deep["reason"]
    assert shallow["prompt_tokens"] == 30 and deep["prompt_tokens"] >= 1024 + 25  # fitted to 1054 tokens
    assert deep["config"]["n_ctx"] >= 1024 + 30 + 8  # raised to hold the depth
    assert all(r["columns"]["decode_tok_s"]["mean"] > 0 for r in (shallow, deep))
    assert any("1024 tokens of context already filled" in n for n in deep["notes"])


def test_depth_with_batch_is_refused(capsys) -> None:
    assert cli.main(["bench", "-m", "embedded", "--batch", "4", "--depth", "512", "--no-save"]) == 1
    assert "without --batch" in capsys.readouterr().err
