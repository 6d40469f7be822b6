"""CPU kernels that cannot take the app down: a worker that dies of SIGILL at its first decode with
llama.cpp's extra buffer types on (the test-only switch LOCALLLM_TEST_SIGILL, as llama.cpp's AMX kernel
does on an AMX Xeon) costs one notice, never the answer. Real workers, the real embedded model.

The answer is checked against a healthy load with the extra buffers off (greedy decoding: the same text),
not against a fixed string: a 135M model's greedy reply differs with the CPU's kernels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localllm.chat.session import ChatSession, KernelNotice, ReplyDone, TextDelta
from localllm.config import LoadOptions, SamplingParams
from localllm.runtime import binding
from tests.sigill import FAKE_SIGILL_ENV

pytestmark = pytest.mark.slow
EXE = shutil.which("localllm") or ""
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def reference() -> str:
    """The greedy reply of a healthy worker with extra buffers off: what every fallback must answer."""
    session = ChatSession(sampling=SamplingParams(temperature=0.0, max_tokens=24))
    try:
        session.load(binding_model(), LoadOptions(extra_buffers="off"))
        reply = "".join(e.text for e in session.send(QUESTION) if isinstance(e, TextDelta))
    finally:
        session.close()
    assert reply.strip()
    return reply


@pytest.fixture
def sigill_home(tmp_path, monkeypatch) -> Path:
    """A machine of its own (no cached probe) whose llama.cpp dies of SIGILL with extra buffers on."""
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    monkeypatch.setenv(FAKE_SIGILL_ENV, "1")
    return tmp_path


def chat_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [EXE] if EXE else [sys.executable, "-m", "localllm"]
    env = dict(os.environ, LOCALLLM_HOME=str(home), **{FAKE_SIGILL_ENV: "1"})
    return subprocess.run([*cmd, "chat", "-p", QUESTION, "--temp", "0", "--max-tokens", "24", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def test_the_probe_finds_the_crash_and_the_cli_answers_after_one_notice(sigill_home, reference) -> None:
    out = chat_cli(sigill_home)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == reference.strip()
    notices = [ln for ln in out.stderr.splitlines() if ln.startswith("[notice]")]
    assert len(notices) == 1 and "extra CPU buffer" in notices[0], out.stderr
    cached = json.loads((sigill_home / "machine" / binding.CACHE_FILE).read_text())
    (entry,) = cached.values()
    assert entry["extra_bufts_ok"] is False and "SIGILL" in entry["extra_bufts_note"]
    again = chat_cli(sigill_home)  # known now: no probe, no notice
    assert again.returncode == 0 and again.stdout == out.stdout and "[notice]" not in again.stderr


def test_a_worker_that_dies_mid_chat_is_retried_once_without_extra_buffers(sigill_home, reference) -> None:
    """The setting says on, so nothing is probed: the first decode dies, the reply is retried."""
    session = ChatSession(sampling=SamplingParams(temperature=0.0, max_tokens=24))
    try:
        session.load(binding_model(), LoadOptions(extra_buffers="on"))
        assert session.model.extra["extra_bufts"] is True
        events = list(session.send(QUESTION))
    finally:
        session.close()
    kinds = [type(e) for e in events]
    assert kinds.count(KernelNotice) == 1 and kinds[-1] is ReplyDone
    reply = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert reply == reference and events[-1].turn.status in ("ok", "length")
    assert session.history[-1].content == reply and len(session.history) == 2
    assert binding.cached().extra_bufts_ok is False  # kept for this machine


def test_cli_with_extra_buffers_forced_on_answers_after_one_notice(sigill_home, reference) -> None:
    (sigill_home / "settings.toml").write_text('cpu_extra_buffers = "on"\n')
    out = chat_cli(sigill_home)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == reference.strip()
    assert out.stderr.count("[notice]") == 1 and "SIGILL" in out.stderr


def test_extra_buffers_reach_llama_cpp(model_path) -> None:
    """The switch is real: the params handed to llama.cpp carry use_extra_bufts as asked."""
    import llama_cpp

    from localllm.backends.llama_cpp import _model_params

    with _model_params(False):
        assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is False
    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is True


def binding_model() -> str:
    from localllm.models.embedded import embedded_model_path

    return str(embedded_model_path())


async def test_the_tui_answers_after_one_notice(sigill_home, reference) -> None:
    from textual.widgets import Input

    from localllm.config.settings import Settings
    from localllm.ui.app import LocalLLMApp
    from localllm.ui.widgets.chat_log import AssistantMessage, Notice
    from tests.waits import wait_for

    app = LocalLLMApp(settings=Settings(extra_buffers="on", temperature=0.0, max_tokens=24,
                                        save_conversations=False))
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        prompt = app.query_one("#prompt", Input)
        prompt.value = QUESTION
        prompt.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.session.history) == 2 and not app.generating)
        notices = [str(n.content) for n in app.query(Notice)]
        assert len(notices) == 1 and "SIGILL" in notices[0]
        assert app.query(AssistantMessage).last().text == reference
        assert app.session.model.extra["extra_bufts"] is False


def _ask(url: str) -> str:
    import urllib.request

    body = json.dumps({"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8,
                       "temperature": 0}).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)["choices"][0]["message"]["content"]


def test_a_bare_llama_server_dies_of_sigill_and_localllm_serve_answers(sigill_home) -> None:
    """The simulation reaches every llama.cpp process, a server included; `localllm serve` (and the
    tests' server helper, which starts it the same way) turns the extra buffers off as the probe says."""
    from tests.hubserver import free_port
    from tests.llama_server import wait_until_serving

    model = binding_model()
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", model, "--port", str(port),
                             "--n_ctx", "512", "--verbose", "False"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", bare, 120)
        with pytest.raises(OSError):
            _ask(f"http://127.0.0.1:{port}")
        assert bare.wait(timeout=60) == -4  # SIGILL, as on an AMX Xeon
    finally:
        bare.kill()
        bare.wait()

    port = free_port()
    cmd = [EXE] if EXE else [sys.executable, "-m", "localllm"]
    served = subprocess.Popen([*cmd, "serve", "--port", str(port), "--ctx", "512", "--", "--verbose", "False"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", served, 120)
        assert _ask(f"http://127.0.0.1:{port}").strip()
        assert served.poll() is None
    finally:
        served.terminate()
        _, err = served.communicate(timeout=30)
    assert "extra CPU buffers off on this machine" in err and "SIGILL" in err, err
