"""Quantization jobs on the real embedded model: checked plans (disk, memory, types), results recorded
and added to the library, cancel that leaves nothing, the CLI; GPTQ's own tests are in
tests/backends/test_gptq.py."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from localllm.chat.session import ChatSession, ReplyDone
from localllm.cli import main as cli
from localllm.config import LoadOptions, SamplingParams
from localllm.errors import LocalLLMError
from localllm.models import library
from localllm.quantize import jobs as quantize_jobs
from localllm.quantize.gguf import QuantizeCancelled, QuantizeError
from localllm.quantize.jobs import GPTQOptions, plan_job, read_record, run_job


@pytest.mark.slow
def test_a_gguf_job_is_planned_run_recorded_and_joins_the_library(tmp_path) -> None:
    plan = plan_job("embedded", "q4_k_m", tmp_path / "smol.Q4_K_M.gguf")
    assert plan.target == "Q4_K_M" and plan.kind == "gguf" and plan.n_params > 100_000_000
    assert plan.free_disk_bytes > plan.disk_bytes and plan.free_ram_bytes > plan.ram_bytes
    seen: list[tuple[int, int]] = []
    result = run_job(plan, progress=lambda i, n: seen.append((i, n)))
    size = result.path.stat().st_size
    assert abs(plan.disk_bytes - size) / size < 0.10  # the plan's disk figure is the estimator's
    assert seen and seen[-1][0] == seen[-1][1]
    record = read_record(result.path)
    assert record == result.record and record["target"] == "Q4_K_M" and record["bytes"] == size
    assert record["source"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and record["seconds"] > 0
    assert "llama-cpp-python" in record["tool"]
    entry = next(e for e in library.list_models() if e.id == result.library_id)
    assert entry.quant == "Q4_K_M" and entry.usable
    # a normal, reloadable model
    s = ChatSession(sampling=SamplingParams(max_tokens=6, ignore_eos=True, seed=1))
    try:
        s.load(str(result.path), LoadOptions(context=256, threads=1))
        done = [e for e in s.send("Hi") if isinstance(e, ReplyDone)][0]
        assert done.stats.completion_tokens == 6
    finally:
        s.close()


def test_a_job_that_would_not_fit_on_disk_is_refused_with_the_numbers(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(quantize_jobs, "_free_disk", lambda folder: 10 * 1024**2)
    with pytest.raises(QuantizeError, match=r"Not enough disk: .* needs ~0\.\d+ GiB of disk \(0\.0 free\)"):
        plan_job("embedded", "Q8_0", tmp_path / "x.gguf")
    monkeypatch.setattr(quantize_jobs, "_free_disk", lambda folder: 100 * 1024**3)
    monkeypatch.setattr(quantize_jobs, "_free_ram", lambda: 64 * 1024**2)
    with pytest.raises(QuantizeError, match=r"Not enough memory: .* GiB of RAM \(0\.1 available\)"):
        plan_job("embedded", "safetensors", tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_are_refused_before_anything_runs(tmp_path, model_path) -> None:
    with pytest.raises(QuantizeError, match="Unknown quantization type 'Q9_9'. Known: "):
        plan_job("embedded", "Q9_9")
    taken = tmp_path / "taken.gguf"
    taken.write_bytes(b"x")
    with pytest.raises(QuantizeError, match="exists already"):
        plan_job("embedded", "Q8_0", taken)
    with pytest.raises(QuantizeError, match="already quantized \\(Q4_1\\); allow re-quantization"):
        plan_job("embedded", "Q8_0", tmp_path / "y.gguf", allow_requantize=False)
    with pytest.raises(QuantizeError, match="GPTQ starts from a full-precision checkpoint folder.*--to safetensors"):
        plan_job(model_path, "gptq")
    with pytest.raises(LocalLLMError, match="does not exist"):
        plan_job(str(tmp_path / "missing.gguf"), "Q8_0")


@pytest.mark.slow  # dequantizes the GGUF with transformers (~40 s)
def test_gptq_settings_are_checked_against_the_checkpoint(checkpoint, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("LOCALLLM_GPTQ_PYTHON", raising=False)
    with pytest.raises(QuantizeError, match="group size 100 does not divide the hidden size 576; use one of 32, 64"):
        plan_job(checkpoint, "gptq", tmp_path / "g", gptq=GPTQOptions(group_size=100))
    with pytest.raises(QuantizeError, match="bits must be 2, 3, 4 or 8"):
        plan_job(checkpoint, "gptq", tmp_path / "g", gptq=GPTQOptions(bits=5, group_size=64))
    # no GPTQModel environment here: refused before running, with the command that makes one
    with pytest.raises(QuantizeError, match="localllm quantize --setup-gptq"):
        plan_job(checkpoint, "gptq", tmp_path / "g", gptq=GPTQOptions(group_size=64))


def test_cancel_leaves_nothing_in_the_folder_or_the_library(tmp_path) -> None:
    plan = plan_job("embedded", "Q8_0", tmp_path / "c.gguf")
    cancel = threading.Event()
    before = {e.id for e in library.list_models()}
    with pytest.raises(QuantizeCancelled, match="cancelled; nothing was written"):
        run_job(plan, progress=lambda i, n: cancel.set(), cancel=cancel)
    assert list(tmp_path.iterdir()) == []
    assert {e.id for e in library.list_models()} == before


@pytest.mark.slow  # dequantizes the GGUF with transformers (~40 s)
def test_a_full_precision_checkpoint_from_a_gguf(tmp_path) -> None:
    result = run_job(plan_job("embedded", "safetensors", tmp_path / "fp32"))
    assert (result.path / "config.json").exists() and list(result.path.glob("*.safetensors"))
    assert not (tmp_path / "fp32.partial").exists()
    config = json.loads((result.path / "config.json").read_text())
    assert "quantization_config" not in config and config["hidden_size"] == 576
    record = read_record(result.path)
    assert record["kind"] == "dequantize" and record["tool"].startswith("transformers")
    assert quantize_jobs.safetensors_params(result.path) == plan_job("embedded", "Q8_0", tmp_path / "q.gguf").n_params


def test_cli_plans_and_runs(tmp_path, capsys) -> None:
    out = tmp_path / "cli.Q8_0.gguf"
    assert cli.main(["quantize", "embedded", "--to", "Q8_0", "-o", str(out), "--plan"]) == 0
    assert "plan: SmolLM2-135M-Instruct.Q4_1.gguf -> " in capsys.readouterr().err and not out.exists()
    assert cli.main(["quantize", "embedded", "--to", "Q8_0", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out and "100% (" in captured.err
    assert cli.main(["models", "--json"]) == 0
    assert str(out) in {e["id"] for e in json.loads(capsys.readouterr().out)}
    assert cli.main(["quantize", "embedded", "--to", "Q8_0", "-o", str(out)]) == 1  # exists: refused
    assert "exists already" in capsys.readouterr().err
    assert Path(str(out) + quantize_jobs.RECORD_SUFFIX).exists()
