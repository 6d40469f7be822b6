"""`localllm bench --concurrency` end to end against a deterministic loopback server: the table with
the knee, JSON and the saved run, and clear errors for what cannot be swept."""

from __future__ import annotations

import json

import pytest

from localllm.cli import main as cli
from tests.sse_server import SseServer


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    return tmp_path


def test_the_sweep_prints_levels_and_the_knee_and_saves_every_request(home, capsys) -> None:
    with SseServer(ttft_s=0.05, interval_s=0.005, serial=True) as server:
        rc = cli.main(["bench", "-m", server.url, "--concurrency", "1,3", "--requests", "3", "--tokens", "6",
                       "--slo", "ttft=120ms"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "Knee: concurrency 1" in out and "TTFT ≤ 120 ms" in out
    saved = [p for p in (home / "bench").glob("sweep-*.json")]
    assert len(saved) == 1 and f"saved {saved[0]}" in err
    data = json.loads(saved[0].read_text())
    assert [len(lv["samples"]) for lv in data["levels"]] == [3, 3] and data["knee"] == 1
    assert cli.main(["bench", "--history"]) == 0
    assert "sweep" in capsys.readouterr().out


def test_json_output_is_the_saved_data(capsys) -> None:
    with SseServer(ttft_s=0.02, interval_s=0.002) as server:
        assert cli.main(["bench", "-m", server.url, "--concurrency", "2", "--requests", "2", "--tokens", "4",
                         "--json", "--no-save"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["levels"][0]["completed"] == 2 and data["levels"][0]["ttft"]["p50"] > 0.015


@pytest.mark.parametrize(("argv", "said"), [
    (["-m", "embedded", "--concurrency", "1,2"], "--concurrency measures a server"),
    (["-m", "http://127.0.0.1:9", "--concurrency", "1", "--requests", "2", "--duration", "1"], "not both"),
    (["-m", "http://127.0.0.1:9", "--concurrency", "one"], "--concurrency takes numbers"),
])
def test_what_cannot_be_swept_is_refused_with_what_to_do(argv, said, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", *argv])
    assert said in str(exc.value)


def test_a_server_that_does_not_answer_is_one_clear_error(capsys) -> None:
    from tests.hubserver import free_port

    rc = cli.main(["bench", "-m", f"http://127.0.0.1:{free_port()}", "--concurrency", "1", "--requests", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "Is the server running" in err
