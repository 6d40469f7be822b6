"""Quantization jobs whose child is silent for minutes (GPTQ, dequantize), through the real job path
with a fake GPTQModel Python (tests/fake_jobs.py): a killed `localllm quantize` leaves no child and
its partial output goes at the next start of a job for the same output, not while a live job writes
it; a failed or cancelled job leaves nothing, `<out>.partial.partial` included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from localllm.quantize.gguf import QuantizeCancelled, QuantizeError
from localllm.quantize.jobs import GPTQOptions, plan_job, run_job
from tests.fake_jobs import fake_gptq_python, read_ready, running_in_group, tiny_checkpoint, wait_until

ROOT = Path(__file__).resolve().parents[2]
GONE_S = 5.0  # the bound: no child of a killed app left after 5 s
START_S = 120.0  # starting Pythons on a loaded 2-core host
OPTS = GPTQOptions(group_size=64)


@pytest.fixture
def job(tmp_path, monkeypatch):
    """(checkpoint, output, ready file); LOCALLLM_GPTQ_PYTHON names the fake. Kills what a failed test left."""
    ready = tmp_path / "ready"
    monkeypatch.setenv("LOCALLLM_GPTQ_PYTHON", str(fake_gptq_python(tmp_path, ready)))
    yield tiny_checkpoint(tmp_path / "ckpt"), tmp_path / "out" / "tiny-gptq", ready
    if ready.exists():
        try:
            os.killpg(read_ready(ready)[0], signal.SIGKILL)
        except ProcessLookupError:
            pass


def partials(out: Path) -> list[Path]:
    """The job's `<out>.partial` and the `<out>.partial.partial` beside it (hf_convert's, in a dequantize)."""
    return [out.with_name(out.name + ".partial"), out.with_name(out.name + ".partial.partial")]


def cancelled() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


def left(out: Path) -> list[Path]:
    return [p for p in partials(out) if p.exists()]


def test_a_sigkilled_quantize_leaves_no_child_and_its_partial_goes_at_the_next_start(job, monkeypatch) -> None:
    ckpt, out, ready = job
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    app = subprocess.Popen([sys.executable, "-m", "localllm", "quantize", str(ckpt), "--to", "gptq",
                            "--group-size", "64", "-o", str(out)], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: ready.exists() or app.poll() is not None, START_S, "the job's child")
        assert ready.exists(), app.stderr.read().decode()
        child, grandchild = read_ready(ready)
        assert sorted(running_in_group(child)) == sorted([child, grandchild])
        # a live job holds its output: a second one is refused and its partial output left alone (the
        # cancel, set already, ends at once a second job that does start)
        with pytest.raises(QuantizeError, match="Another job is writing"):
            run_job(plan_job(str(ckpt), "gptq", out, gptq=OPTS), cancel=cancelled())
        assert (out.parent / "tiny-gptq.partial" / "model.safetensors").exists()
    finally:
        app.kill()
        app.wait()
    wait_until(lambda: not running_in_group(child), GONE_S, "the job's child and grandchild to end with the app")
    assert left(out)  # nothing ran to remove it: a killed app cannot
    monkeypatch.setenv("FAKE_JOB_MODE", "ok")
    result = run_job(plan_job(str(ckpt), "gptq", out, gptq=OPTS))
    assert sorted(result.stale_removed) == sorted(str(p) for p in partials(out))
    assert (out / "config.json").exists() and left(out) == []


def test_a_failed_job_leaves_no_partial_output(job, monkeypatch) -> None:
    ckpt, out, ready = job
    monkeypatch.setenv("FAKE_JOB_MODE", "fail")
    with pytest.raises(QuantizeError, match="the fake said no"):
        run_job(plan_job(str(ckpt), "gptq", out, gptq=OPTS))
    assert ready.exists() and not out.exists()
    assert left(out) == []  # <out>.partial.partial too, which the old code left
    assert sorted(p.name for p in out.parent.iterdir()) == []


def test_a_cancelled_silent_job_is_killed_with_its_grandchild_and_leaves_nothing(job) -> None:
    ckpt, out, ready = job
    cancel = threading.Event()

    def cancel_when_ready() -> None:
        wait_until(ready.exists, START_S, "the job's child")
        cancel.set()

    watcher = threading.Thread(target=cancel_when_ready, daemon=True)
    watcher.start()
    with pytest.raises(QuantizeCancelled):
        run_job(plan_job(str(ckpt), "gptq", out, gptq=OPTS), cancel=cancel)
    child, _ = read_ready(ready)
    wait_until(lambda: not running_in_group(child), GONE_S, "the job's child and grandchild")
    assert left(out) == [] and sorted(p.name for p in out.parent.iterdir()) == []
