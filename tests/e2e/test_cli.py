"""The installed `localllm` command, run as a user would, in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

EXE = shutil.which("localllm") or ""


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [EXE, *args] if EXE else [sys.executable, "-m", "localllm", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_version_and_help() -> None:
    from localllm import __version__

    out = run("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    out = run("--help")
    assert out.returncode == 0 and "chat" in out.stdout and "--model" in out.stdout


def test_one_shot_json_has_the_reply_and_every_number() -> None:
    out = run("chat", "-p", "Say hello.", "--json", "--max-tokens", "12", "--seed", "7", "--ctx", "512")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["reply"].strip()
    assert record["model"]["quant"] == "Q4_1" and record["model"]["n_ctx"] == 512
    stats = record["stats"]
    for key in ("wall_s", "cpu_user_s", "cpu_sys_s", "cpu_total_s", "cpu_per_wall", "ttft_s",
                "prefill_tok_s", "decode_tok_s", "latency_p50_ms", "latency_p90_ms",
                "rss_now_mib", "rss_peak_mib", "vram_now_mib", "prompt_tokens", "completion_tokens"):
        assert key in stats
    assert 0 < stats["completion_tokens"] <= 12
    assert stats["wall_s"] > 0 and stats["cpu_total_s"] > 0 and stats["ttft_s"] < stats["wall_s"]
    assert stats["vram_now_mib"] is None  # no GPU on this machine


def test_one_shot_text_prints_reply_then_time_view() -> None:
    out = run("chat", "-p", "Count to three.", "--max-tokens", "10", "--seed", "1", "--ctx", "512")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert "CPU times: user" in out.stderr and "Wall time:" in out.stderr and "decode" in out.stderr


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"hello world", "not a GGUF file")])
def test_bad_model_file_exits_with_a_message(tmp_path, content, reason) -> None:
    bad = tmp_path / "m.gguf"
    bad.write_bytes(content)
    out = run("chat", "-p", "hi", "--model", str(bad))
    assert out.returncode == 1
    assert str(bad) in out.stderr and reason in out.stderr and "Traceback" not in out.stderr


def test_missing_model_and_empty_prompt() -> None:
    out = run("chat", "-p", "hi", "--model", "/no/such/model.gguf")
    assert out.returncode == 1 and "does not exist" in out.stderr
    out = run("chat", "-p", "  ")
    assert out.returncode == 2 and "empty" in out.stderr


def test_plain_repl_over_stdin() -> None:
    cmd = [EXE, "chat"] if EXE else [sys.executable, "-m", "localllm", "chat"]
    out = subprocess.run(cmd + ["--max-tokens", "5", "--ctx", "512"], input="Hi\n/exit\n",
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "localllm chat" in out.stderr and "decode" in out.stderr
