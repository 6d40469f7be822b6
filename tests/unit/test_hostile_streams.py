"""Hostile streams (issue 21, items 9 and 10): a reply's terminal escape codes, a server's lone
surrogate, a worker pipe carrying JSON that is not an object, and a bench run whose save fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from localllm.bench.results import BenchResult, RowResult, build_manifest
from localllm.cli import main as cli
from localllm.cli.safe_text import terminal_safe
from localllm.errors import WorkerDied
from localllm.runtime.worker import WorkerClient
from tests.recording_server import RecordingServer

HOSTILE = ["Hi\x1b]0;pwned\x07 there", "\x1b[2J", "\x1bP1;2|secret\x1b\\", "\x9b31m", "ok\tdone\nend\r"]


def test_terminal_safe_drops_escape_sequences_and_controls_but_keeps_layout() -> None:
    assert terminal_safe("".join(HOSTILE)) == "Hi there31mok\tdone\nend"
    assert terminal_safe("a\x1b") + terminal_safe("]0;t\x07b") == "a]0;tb"  # split: no ESC, no sequence
    assert terminal_safe("plain text · ünïcode 😀") == "plain text · ünïcode 😀"


def _chat(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localllm", "chat", "--endpoint", url, "-p", "hi", "--quiet"],
                          capture_output=True, text=True, timeout=180, encoding="utf-8", errors="strict")


@pytest.mark.slow  # a worker process (the remote backend runs in one)
def test_chat_prints_a_reply_without_running_its_escape_codes() -> None:
    with RecordingServer(HOSTILE) as srv:
        out = _chat(srv.url)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\x9b" not in out.stdout
    assert "Hi there" in out.stdout and "ok\tdone\nend" in out.stdout


@pytest.mark.slow
def test_a_lone_surrogate_from_a_server_becomes_a_replacement_character() -> None:
    with RecordingServer(["before ", "\ud800", " after", " \ud83d\ude00"]) as srv:
        out = _chat(srv.url)
    assert out.returncode == 0, out.stderr
    assert "before \ufffd after 😀" in out.stdout  # the reply goes on; a valid pair is kept


# -- the worker pipe -----------------------------------------------------------------------------------
def _fake_worker(tmp_path: Path, body: str) -> str:
    """An executable standing in for the worker's interpreter: WorkerClient runs it as
    `<it> -m localllm.runtime.worker_main`, and it runs `body` instead."""
    script = tmp_path / "fake_worker.py"
    script.write_text("import sys\n" + textwrap.dedent(body))
    exe = tmp_path / "fake-python"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {script}\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.slow  # starts a (fake) worker: the quick tier refuses WorkerClient.start
def test_json_lines_that_are_not_events_are_skipped_like_garbage(tmp_path) -> None:
    exe = _fake_worker(tmp_path, """
        for line in ('[1]', '"x"', '3', 'null', '{"no": "ev"}', '{"ev": 5}', 'not json', '{"ev": "ready"}'):
            print(line, flush=True)
        sys.stdin.readline()  # the app's first request
        print('[2]', flush=True)
        print('{"ev": "count", "n": 7}', flush=True)
        sys.stdin.readline()
        print('"bye"', flush=True)
    """)
    client = WorkerClient(log_dir=tmp_path, python=exe)
    try:
        client.start(timeout=60)  # the reader thread lived through the garbage and saw "ready"
        assert client.count_tokens([{"role": "user", "content": "hi"}]) == 7
        with pytest.raises(WorkerDied):  # the child exits: said at once, no wait forever
            client.request({"op": "count", "messages": []}, "count", timeout=60)
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts read syscalls in /proc/self/io")
def test_the_pipe_is_read_in_blocks_not_bytes(tmp_path) -> None:
    size = 300_000
    exe = _fake_worker(tmp_path, f"""
        print('{{"ev": "ready"}}', flush=True)
        sys.stdin.readline()
        print('{{"ev": "count", "n": 1, "pad": "' + 'x' * {size} + '"}}', flush=True)
        sys.stdin.readline()
    """)
    client = WorkerClient(log_dir=tmp_path, python=exe)

    def reads() -> int:
        return int(dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())["syscr"])

    try:
        client.start(timeout=60)
        before = reads()
        assert client.count_tokens([]) == 1
        # one read a byte would be `size` reads; any buffered reader needs a few dozen
        assert reads() - before < size // 100
    finally:
        client.close()


# -- bench prints before it saves ----------------------------------------------------------------------
def test_bench_shows_the_table_when_the_save_fails(tmp_path, monkeypatch, capsys) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "bench").write_text("a file where the results folder should be")  # mkdir fails: OSError
    monkeypatch.setenv("LOCALLLM_HOME", str(home))
    manifest = build_manifest({"seed": 42, "prompt_tokens": 30, "gen_tokens": 30}, ["p"], 20e9)
    row = RowResult("the-long-run", {"model": "embedded", "backend": "llama_cpp"}, model={"quant": "Q4_1"})
    row.reps = [{"decode_tok_s": 42.5, "ttft_s": 0.05, "wall_s": 0.4}]
    row.summarize(None)
    monkeypatch.setattr("localllm.bench.runs.run_plan", lambda plan, progress=None: BenchResult(manifest, [row]))
    rc = cli.main(["bench", "-m", "embedded", "--reps", "1", "--json"])
    out, err = capsys.readouterr()
    assert rc == 1  # the save failed: not a success
    assert json.loads(out)["rows"][0]["label"] == "the-long-run"  # ... but the results were shown
    assert "could not be saved" in err and os.fspath(home / "bench") in err
