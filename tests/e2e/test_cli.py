"""The installed `localllm` command, run as a user would, in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier

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


def test_repeated_prompts_are_turns_of_one_conversation_reusing_the_kv_cache() -> None:
    """`chat -p A -p B -p C --json`: one JSON line per turn; from turn 2 on, the tokens of the turns
    before come from the KV cache and are not processed again."""
    out = run("chat", "-p", "What is the capital of France?", "-p", "And of Italy?", "-p", "And of Spain?",
              "--json", "--temp", "0", "--max-tokens", "16", "--ctx", "1024")
    assert out.returncode == 0, out.stderr
    turns = [json.loads(line) for line in out.stdout.splitlines()]
    assert [t["turn"] for t in turns] == [1, 2, 3]
    assert turns[0]["cached_tokens"] == 0
    for before, now in zip(turns, turns[1:], strict=False):
        # every token of the turns before (prompt and reply) but the reply's last is reused
        assert before["prompt_tokens"] < now["cached_tokens"] < now["prompt_tokens"]
        assert now["cached_tokens"] >= before["prompt_tokens"] + before["stats"]["completion_tokens"] - 1
    assert all(t["ttft_ms"] > 0 and t["decode_tok_s"] > 0 and t["reply"].strip() for t in turns)


def test_one_shot_json_has_the_reply_and_every_number() -> None:
    out = run("chat", "-p", "Say hello.", "--json", "--max-tokens", "12", "--seed", "7", "--context", "512")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["reply"].strip()
    assert record["model"]["quant"] == "Q4_1" and record["model"]["n_ctx"] == 512
    assert record["model"]["context"] == 512  # the knob's one name, beside the old n_ctx
    # the load's progress on stderr (a pipe: plain lines), and its time in the record
    assert "loading model" in out.stderr and "100/100" in out.stderr and "[loaded in" in out.stderr
    assert record["load_s"] > 0 and record["model"]["load_s"] == pytest.approx(record["load_s"], abs=1e-3)
    stats = record["stats"]
    for key in ("wall_s", "cpu_user_s", "cpu_sys_s", "cpu_total_s", "cpu_per_wall", "ttft_s",
                "prefill_tok_s", "decode_tok_s", "latency_p50_ms", "latency_p90_ms",
                "rss_now_mib", "rss_peak_mib", "vram_now_mib", "gpu_util_pct", "limit_tok_s", "percent_of_limit",
                "prompt_tokens", "completion_tokens"):
        assert key in stats
    assert 0 < stats["completion_tokens"] <= 12
    assert stats["wall_s"] > 0 and stats["cpu_total_s"] > 0 and stats["ttft_s"] < stats["wall_s"]
    from localllm.machine import gpu

    if gpu.unavailable_reason():  # no NVIDIA driver: absent, never 0
        assert stats["vram_now_mib"] is None
    else:  # the worker's own VRAM through NVML: 0 when nothing was offloaded
        assert stats["vram_now_mib"] is not None and stats["vram_now_mib"] >= 0
    from localllm.machine.bandwidth import cached_bandwidth

    if cached_bandwidth():  # decode against the memory-bandwidth roofline, where the bandwidth is known
        assert stats["percent_of_limit"] == pytest.approx(100 * stats["decode_tok_s"] / stats["limit_tok_s"])
    else:
        assert stats["limit_tok_s"] is None and stats["percent_of_limit"] is None


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


def test_plan_prints_itemized_plans_for_this_machine_and_a_gpu_box() -> None:
    out = run("plan", "embedded", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    cpu = plan["devices"]["cpu"]
    for key in ("weights", "kv_cache", "compute_buffers", "runtime_overhead", "total", "rss_at_full_context"):
        assert cpu[key] > 0, key
    assert plan["fits"] and plan["context"] == 2048 and plan["format"] == "gguf"
    gpu_box = json.loads(run("plan", "embedded", "--hw", "gpu-24gb", "--json").stdout)
    assert gpu_box["placement"] == "full GPU" and gpu_box["gpu_layers"] == -1
    assert gpu_box["devices"]["gpu0"]["weights"] > 50 * 2**20 and gpu_box["devices"]["cpu"]["kv_cache"] == 0
    text = run("plan", "embedded", "--hw", "gpu-24gb").stdout
    assert "full GPU" in text and "gpu0" in text and "kv cache" in text


def test_chat_json_puts_the_plan_beside_the_measured_peak() -> None:
    out = run("chat", "-p", "Say hello.", "--json", "--max-tokens", "12", "--ctx", "1024")
    assert out.returncode == 0, out.stderr
    cpu = json.loads(out.stdout)["plan"]["devices"]["cpu"]
    assert cpu["measured_peak_mib"] > 50 and cpu["fill_tokens"] > 12
    assert abs(cpu["error_pct"]) < 10, cpu  # the plan's RSS at this fill against the worker's peak


def test_a_model_that_cannot_fit_is_refused_with_what_would() -> None:
    out = run("chat", "-p", "Hi", "--ctx", "100000000")
    assert out.returncode == 1
    assert "does not fit" in out.stderr and "--force" in out.stderr and "context" in out.stderr
