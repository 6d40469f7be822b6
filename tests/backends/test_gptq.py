"""GPTQ for real on the CPU: the app's own job quantizes the dequantized SmolLM2 with GPTQModel (in its
own environment: torch 2.14.1 + gptqmodel, made by `localllm quantize --setup-gptq`'s code), the result
joins the library and chats through a worker running in that environment.

The environment is built once into <this venv>/gptq-env (~2 min from pip's disk and PyPI; CI removes
.venv first, so it is built from nothing there) unless LOCALLLM_GPTQ_PYTHON names one."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from localllm.chat.session import ChatSession
from localllm.config import LoadOptions, SamplingParams
from localllm.models import library
from localllm.quantize.gguf import QuantizeCancelled
from localllm.quantize.jobs import GPTQOptions, plan_job, read_record, run_job
from localllm.runtime import gptq_env
from tests.replies import collect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gptq_python():
    named = os.environ.get(gptq_env.ENV_VAR)
    python = named or gptq_env.setup(log=sys.stderr, folder=Path(sys.prefix) / "gptq-env")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(gptq_env.ENV_VAR, python)
        yield python


@pytest.fixture(scope="module")
def gptq_model(gptq_python, checkpoint, tmp_path_factory):
    plan = plan_job(checkpoint, "gptq", tmp_path_factory.mktemp("gptq") / "smollm2-gptq-4bit",
                    gptq=GPTQOptions(bits=4, group_size=64, calibration_samples=16))
    return run_job(plan)


def test_the_apps_own_gptq_job_writes_a_recorded_library_model(gptq_model) -> None:
    path = gptq_model.path
    assert (path / "config.json").exists() and list(path.glob("*.safetensors"))
    record = read_record(path)
    assert record["kind"] == "gptq" and record["options"]["group_size"] == 64 and record["options"]["bits"] == 4
    entry = next(e for e in library.list_models() if e.id == gptq_model.library_id)
    assert entry.quant == "gptq-4bit-g64" and entry.usable


def test_chat_with_the_gptq_model_through_its_own_environment(gptq_model) -> None:
    s = ChatSession(sampling=SamplingParams(temperature=0.0, max_tokens=16, seed=1))
    try:
        info = s.load(str(gptq_model.path), LoadOptions(context=512, threads=2))
        assert info.backend == "transformers" and info.quant == "gptq-4bit-g64"
        text, done = collect(s.send("What is the capital of France?"))
        assert "Paris" in text  # 4-bit GPTQ of a 135M model still knows this one
        assert done.stats.completion_tokens > 0 and done.stats.decode_tok_s > 0 and done.stats.rss_peak_mib > 100
    finally:
        s.close()


def test_a_cancelled_gptq_job_leaves_nothing(gptq_python, checkpoint, tmp_path) -> None:
    plan = plan_job(checkpoint, "gptq", tmp_path / "cancelled", gptq=GPTQOptions(group_size=64))
    cancel = threading.Event()
    with pytest.raises(QuantizeCancelled):
        run_job(plan, progress=lambda i, n: cancel.set(), cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_too_little_calibration_text_is_refused(checkpoint, tmp_path, monkeypatch) -> None:
    from transformers import AutoTokenizer

    from localllm.quantize import gptq_job

    short = tmp_path / "short.txt"
    short.write_text("Only one short paragraph.\n\nAnd another.")
    monkeypatch.setattr(gptq_job, "CALIBRATION", short)
    with pytest.raises(SystemExit, match="calibration text gives 0 samples"):
        gptq_job.calibration_samples(AutoTokenizer.from_pretrained(checkpoint), 64)
    monkeypatch.undo()
    assert len(gptq_job.calibration_samples(AutoTokenizer.from_pretrained(checkpoint), 64)) >= gptq_job.MIN_SAMPLES


def test_a_timing_run_of_the_gptq_model_runs_in_its_environment(gptq_model) -> None:
    from localllm.bench.plan import BenchConfig, BenchPlan
    from localllm.bench.runs import run_plan

    plan = BenchPlan([BenchConfig(str(gptq_model.path), backend="transformers", n_threads=2)],
                     prompt_tokens=30, gen_tokens=8, reps=1, warmup=0)
    row = run_plan(plan).rows[0]
    assert row.status == "ok", row.reason
    assert row.model["quant"] == "gptq-4bit-g64" and row.columns["decode_tok_s"].mean > 0
