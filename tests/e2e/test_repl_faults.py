"""`localllm chat` as a REPL, interrupted the way a user interrupts it: a real SIGINT mid-reply."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.slow  # a real model worker

DEADLINE_S = 180.0  # a shared 2-core host loads and decodes several times slower than a quiet one


class Stream:
    """A pipe read into a growing string by a thread, so the test can wait on what it says."""

    def __init__(self, pipe) -> None:
        self.text = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe) -> None:
        while chunk := os.read(pipe.fileno(), 4096):
            with self._lock:
                self.text += chunk.decode("utf-8", errors="replace")

    def wait_for(self, predicate, what: str, proc: subprocess.Popen) -> None:
        end = time.monotonic() + DEADLINE_S
        while not predicate(self.text):
            assert proc.poll() is None or predicate(self.text), f"the REPL exited ({proc.returncode}) " \
                f"waiting for {what}; it printed:\n{self.text[-2000:]}"
            assert time.monotonic() < end, f"timed out waiting for {what}; it printed:\n{self.text[-2000:]}"
            time.sleep(0.05)


def test_ctrl_c_stops_the_reply_the_next_message_works_and_both_are_saved(tmp_path) -> None:
    env = dict(os.environ, LOCALLLM_HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "localllm", "chat", "--temp", "0", "--max-tokens", "400",
                             "--ctx", "1024"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    out, err = Stream(proc.stdout), Stream(proc.stderr)
    try:
        out.wait_for(lambda t: t.count("> ") >= 1, "the first prompt", proc)
        proc.stdin.write(b"Count from 1 to 300, one number per line.\n")
        proc.stdin.flush()
        started = len(out.text)
        out.wait_for(lambda t: len(t) > started + 20, "the reply to stream", proc)
        proc.send_signal(signal.SIGINT)  # Ctrl-C in the terminal, mid-reply
        err.wait_for(lambda t: "[stopped]" in t, "the reply to stop", proc)
        out.wait_for(lambda t: t.count("> ") >= 2, "the next prompt", proc)

        proc.stdin.write(b"What is the capital of France?\n")
        proc.stdin.flush()
        err.wait_for(lambda t: "decode" in t, "the second reply's stats line", proc)
        assert "expected" not in err.text and "error" not in err.text.lower(), err.text
        proc.stdin.write(b"/exit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=DEADLINE_S) == 0, err.text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    from localllm.chat.conversations import ConversationStore

    with ConversationStore(tmp_path / "conversations.db") as store:
        (summary,) = store.list()
        turns = store.load(summary.id).turns
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[1].status == "stopped" and turns[1].content.strip()  # what arrived before Ctrl-C
    assert turns[3].status == "ok" and turns[3].content.strip()
