"""Every wait on a worker is bounded: a stop it ignores, a prompt count that never ends (a chat template
looping for CPU), a reply whose reader went away. A fake worker speaks the real protocol and misbehaves."""

from __future__ import annotations

import sys
import textwrap
import time

import pytest

from localllm.config import SamplingParams
from localllm.errors import LocalLLMError
from localllm.runtime.worker import WorkerClient

pytestmark = pytest.mark.slow  # it starts a (fake) worker process

FAKE = textwrap.dedent('''
    import json, os, sys, time
    out = os.fdopen(os.dup(1), "w", buffering=1)
    def send(**ev):
        out.write(json.dumps(ev) + "\\n")
    send(ev="ready", pid=os.getpid())
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "count":
            while True:  # a chat template that loops for CPU
                pass
        if req["op"] == "chat":
            send(ev="prefill", n=3, cached=0, ts=time.perf_counter())
            send(ev="tok", t="Hello", n=[1], ts=[time.perf_counter()])
            if req["messages"][-1]["content"] == "stubborn":
                time.sleep(3600)  # ignores the stop that follows
            for req in map(json.loads, sys.stdin):
                if req["op"] == "cancel":
                    send(ev="done", reason="cancelled")
                    break
''')


@pytest.fixture
def fake_python(tmp_path):
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE)
    runner = tmp_path / "python"
    runner.write_text(f"#!/bin/sh\nexec {sys.executable} {script}\n")  # takes the place of the interpreter
    runner.chmod(0o755)
    return str(runner)


def test_a_prompt_count_that_never_ends_is_an_error_within_its_bound(fake_python, tmp_path) -> None:
    client = WorkerClient(log_dir=tmp_path, python=fake_python)
    client.start()
    began = time.monotonic()
    with pytest.raises(LocalLLMError, match="chat template may loop"):
        client.count_tokens([{"role": "user", "content": "hi"}], timeout=0.5)
    assert time.monotonic() - began < 10
    assert not client.alive  # the wedged worker was stopped; the next message starts another
    client.close()


def test_a_worker_that_ignores_a_stop_is_killed_after_the_grace(fake_python, tmp_path) -> None:
    client = WorkerClient(log_dir=tmp_path, python=fake_python)
    client.start()
    client.stop_grace_s = 0.3
    events = client.chat([{"role": "user", "content": "stubborn"}], SamplingParams())
    assert next(events)["ev"] == "prefill" and next(events)["ev"] == "tok"
    client.cancel()
    began = time.monotonic()
    last = next(events)
    assert last["ev"] == "done" and last["reason"] == "cancelled" and last["forced"]
    assert time.monotonic() - began < 5
    assert not client.alive
    client.close()


def test_a_reply_left_unread_is_ended_before_the_next_request(fake_python, tmp_path) -> None:
    """The REPL's Ctrl-C case: the reader of a reply went away; the next request gets its own answer."""
    client = WorkerClient(log_dir=tmp_path, python=fake_python)
    client.start()
    events = client.chat([{"role": "user", "content": "hi"}], SamplingParams())
    assert next(events)["ev"] == "prefill"
    del events  # walked away mid-reply, the worker still streaming
    again = client.chat([{"role": "user", "content": "hi"}], SamplingParams())
    assert [next(again)["ev"], next(again)["ev"]] == ["prefill", "tok"]  # not the old reply's tok/done
    client.cancel()
    assert next(again)["reason"] == "cancelled"
    client.close()
