"""Shared fixtures: the real embedded model, and a private LOCALLLM_HOME for every run."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from localllm.config import SamplingParams
from localllm.models.embedded import embedded_model_path
from tests import sigill

# Set before any test imports localllm.config paths: logs never land in the user's home.
_HOME = tempfile.mkdtemp(prefix="localllm-test-home-")
os.environ["LOCALLLM_HOME"] = _HOME
# The library reads no Ollama / LM Studio store of the developer's own (tests/unit/test_stores.py
# builds its stores and turns them on).
os.environ["LOCALLLM_STORES"] = "none"
# Every process the tests start can simulate an AMX host's SIGILL (with LOCALLLM_TEST_SIGILL set).
sigill.on_pythonpath()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _quick_tier_starts_no_worker(request, monkeypatch):
    """`-m "not slow"` (make test-fast) is the quick tier: a test there that starts a model worker fails
    and says to mark it slow, so the tier stays quick as tests are added. The one exception: a worker that
    loads the scripted backend (no model: it starts in a fraction of a second), in a test that turned it
    on with the `scripted_model` fixture; it may load nothing else, nor probe llama.cpp."""
    markexpr = request.config.getoption("markexpr", "") or ""
    if "not slow" not in markexpr or request.node.get_closest_marker("slow"):
        return
    from localllm.config.options import SCRIPTED_BACKEND, scripted_enabled
    from localllm.runtime.worker import WorkerClient

    def refuse():
        raise RuntimeError("this test starts a model worker: mark it @pytest.mark.slow (the quick tier "
                           "starts none but the scripted backend's)")

    start, send = WorkerClient.start, WorkerClient.send

    def start_scripted_only(self, *args, **kwargs):
        if not scripted_enabled():
            refuse()
        return start(self, *args, **kwargs)

    def send_scripted_only(self, obj: dict) -> None:
        op = obj.get("op")
        if op == "caps" or (op == "load" and obj.get("backend") != SCRIPTED_BACKEND):
            refuse()
        return send(self, obj)

    monkeypatch.setattr(WorkerClient, "start", start_scripted_only)
    monkeypatch.setattr(WorkerClient, "send", send_scripted_only)


@pytest.fixture
def scripted_model(tmp_path, monkeypatch):
    """`scripted_model(tokens, delay_s=0.05, first_s=0.0, **more)`: the path of a script for the scripted
    backend (localllm.backends.scripted: fixed tokens at set delays, no model), which this test may then
    load like any model; the worker it starts inherits the variable that turns the backend on."""
    from localllm.config.options import SCRIPTED_ENV, SCRIPTED_SUFFIX

    monkeypatch.setenv(SCRIPTED_ENV, "1")

    def make(tokens: list[str], delay_s: float = 0.05, first_s: float = 0.0, name: str = "script",
             **more) -> str:
        path = tmp_path / f"{name}{SCRIPTED_SUFFIX}"
        path.write_text(json.dumps({"tokens": tokens, "delay_s": delay_s, "first_s": first_s, **more}))
        return str(path)

    return make


@pytest.fixture(autouse=True)
def _own_calibration():
    """Measured runs calibrate later estimates: a test must not inherit another test's records (the
    chat app records one after every reply)."""
    from localllm.machine.calibration import calibration_path

    calibration_path().unlink(missing_ok=True)
    yield
    calibration_path().unlink(missing_ok=True)


@pytest.fixture(scope="session")
def model_path() -> str:
    return str(embedded_model_path())


@pytest.fixture
def greedy() -> SamplingParams:
    return SamplingParams(temperature=0.0, seed=1, max_tokens=48)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, model_path) -> str:
    """The embedded SmolLM2 dequantized to a fp32 safetensors checkpoint, built once per test run."""
    from localllm.backends.hf_convert import gguf_to_checkpoint

    out = gguf_to_checkpoint(model_path, tmp_path_factory.mktemp("ckpt") / "smollm2-fp32")
    return str(out)


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """benchmarks/model_factory.py's random-weight GGUFs with real shapes, written into this run's own
    folder: `shapes("llama-70b")` (a sparse header: kilobytes on disk) or `shapes("llama-1b")` (705 MB,
    ~8 s; the largest the suite writes)."""
    from benchmarks import model_factory

    folder = tmp_path_factory.mktemp("shapes")

    def make(name: str) -> str:
        assert name in ("llama-1b", "llama-70b"), "the suite writes the 1B file at most"
        return str(model_factory.make(name, folder / f"{name}.gguf", quiet=True))

    return make
