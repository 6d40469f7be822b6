"""Shared fixtures: the real embedded model, and a private LOCALLLM_HOME for every run."""

from __future__ import annotations

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
    and says to mark it slow, so the tier stays quick as tests are added."""
    markexpr = request.config.getoption("markexpr", "") or ""
    if "not slow" not in markexpr or request.node.get_closest_marker("slow"):
        return
    from localllm.runtime.worker import WorkerClient

    def refuse(self, *args, **kwargs):
        raise RuntimeError("this test starts a model worker: mark it @pytest.mark.slow (the quick tier "
                           "starts none)")

    monkeypatch.setattr(WorkerClient, "start", refuse)


@pytest.fixture(autouse=True)
def _own_calibration():
    """Measured runs calibrate later estimates: a test must not inherit another test's records (the
    chat app records one after every reply)."""
    from localllm.machine.estimate import calibration_path

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
