"""The chat session with the real model in a real worker process."""

from __future__ import annotations

import os
import signal

import pytest

from localllm.chat.session import ChatSession, ReplyDone, TextDelta, TrimNotice
from localllm.config import LoadOptions, SamplingParams
from localllm.errors import ModelFileError, NoModelLoaded, PromptTooLong, WorkerDied

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier


@pytest.fixture(scope="module")
def session(model_path):
    s = ChatSession(sampling=SamplingParams(temperature=0, seed=1, max_tokens=40))
    s.load(model_path, LoadOptions(context=1024, threads=2))
    yield s
    s.close()


def reply(events):
    text, done, notices = "", None, []
    for ev in events:
        if isinstance(ev, TextDelta):
            text += ev.text
        elif isinstance(ev, ReplyDone):
            done = ev
        elif isinstance(ev, TrimNotice):
            notices.append(ev)
    return text, done, notices


def test_meter_counts_every_generated_token(session) -> None:
    session.clear()
    session.sampling = SamplingParams(max_tokens=50, ignore_eos=True, seed=2)
    text, done, _ = reply(session.send("Tell me about the sea."))
    s = done.stats
    assert s.completion_tokens == 50  # the worker generated exactly 50 tokens
    assert s.finish_reason == "length" and done.turn.status == "length"
    assert s.wall_s > 0 and s.cpu_user_s + s.cpu_sys_s > 0
    assert 0 < s.ttft_s < s.wall_s
    assert s.decode_tok_s > 0 and s.prefill_tok_s > 0
    assert s.latency_p50_ms > 0 and s.latency_p90_ms >= s.latency_p50_ms
    assert s.rss_peak_mib > 50  # the worker holds the 98 MB model
    assert s.cpu_total_s <= s.wall_s * (os.cpu_count() or 1) + 0.5
    assert done.turn.content == text and text


def test_multi_turn_history_and_cache(session) -> None:
    session.clear()
    session.sampling = SamplingParams(temperature=0, seed=1, max_tokens=30)
    reply(session.send("My name is Ada."))
    _, done, _ = reply(session.send("What is my name?"))
    assert [t.role for t in session.history] == ["user", "assistant", "user", "assistant"]
    assert done.stats.cached_tokens > 0  # the first exchange is reused from the KV cache
    msgs = session.messages()
    assert msgs[0]["role"] == "system" and msgs[1]["content"] == "My name is Ada."


def test_empty_message_is_ignored(session) -> None:
    before = list(session.history)
    assert list(session.send("   ")) == []
    assert session.history == before


def test_regenerate_replaces_the_last_reply(session) -> None:
    session.clear()
    session.sampling = SamplingParams(temperature=0, seed=1, max_tokens=20)
    first, _, _ = reply(session.send("Name a fruit."))
    again, _, _ = reply(session.regenerate())
    assert len(session.history) == 2 and session.history[-1].content == again == first


def test_stop_mid_reply_keeps_history_consistent(session) -> None:
    session.clear()
    session.sampling = SamplingParams(max_tokens=500, ignore_eos=True, seed=1)
    seen = 0
    done = None
    for ev in session.send("Write a very long story."):
        if isinstance(ev, TextDelta):
            seen += 1
            if seen == 1:
                session.stop()
        elif isinstance(ev, ReplyDone):
            done = ev
    assert done.turn.status == "stopped" and done.stats.finish_reason == "cancelled"
    assert done.stats.completion_tokens < 500
    assert [t.role for t in session.history] == ["user", "assistant"]
    assert session.history[-1].content  # the partial reply is kept
    text, done, _ = reply(session.send("Thanks."))  # and the session goes on
    assert done.turn.status in ("ok", "length") and len(session.history) == 4


def test_a_calibrating_session_keeps_each_reply_beside_the_estimate(session) -> None:
    """The TUI's session (calibrate on) keeps each reply's measured peak, and its decode speed when this
    machine's bandwidth is known, beside the estimator's uncalibrated prediction, and says the estimate for
    the reply's fill in ReplyDone; a session that does not calibrate (the CLI's) keeps nothing."""
    from localllm.machine.bandwidth import cached_bandwidth
    from localllm.machine.calibration import load_measurements

    session.clear()
    session.sampling = SamplingParams(max_tokens=12, ignore_eos=True, seed=3)
    _, done, _ = reply(session.send("Hi."))
    assert done.estimate_mib is None and load_measurements() == []
    assert session.memory_estimate_mib(fill=1) > 0  # the figure shown after a load
    session.calibrate = True
    try:
        _, done, _ = reply(session.send("And again."))
    finally:
        session.calibrate = False
    assert done.estimate_mib > 0
    runs = load_measurements()
    [run] = [r for r in runs if r.get("measured_ram_bytes")]
    assert run["format"] == "gguf" and run["context"] == 1024 and run["predicted_ram_bytes"] > 0
    assert run["measured_ram_bytes"] == int(done.stats.rss_peak_mib * 2**20)
    if cached_bandwidth():  # the speed model needs this machine's bandwidth: then the decode is kept too
        [speed] = [r for r in runs if r.get("measured_tok_s")]
        assert speed["measured_tok_s"] == done.stats.decode_tok_s and speed["predicted_tok_s"] > 0


def test_old_turns_trimmed_with_a_notice(model_path) -> None:
    s = ChatSession(sampling=SamplingParams(max_tokens=64, ignore_eos=True, seed=1))
    s.load(model_path, LoadOptions(context=256, threads=2))
    try:
        notices = []
        for i in range(4):
            _, done, got = reply(s.send(f"Message {i}: tell me something about the number {i}."))
            notices += got
        assert notices, "history of ~4x80 tokens must outgrow a 256-token context"
        assert notices[0].dropped_turns >= 2 and "no longer fit" in str(notices[0])
        assert s.context_start > 0 and s.history[s.context_start].role == "user"
        assert len(s.history) == 8  # trimmed turns stay visible; only the model stops seeing them
        assert done.stats.prompt_tokens + 16 <= 256
    finally:
        s.close()


def test_prompt_longer_than_context_is_refused_and_not_kept(model_path) -> None:
    s = ChatSession()
    s.load(model_path, LoadOptions(context=128, threads=1))
    try:
        with pytest.raises(PromptTooLong, match="--context"):
            list(s.send("word " * 400))
        assert s.history == []
    finally:
        s.close()


def test_bad_model_file_is_refused_before_any_worker(tmp_path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a model at all")
    s = ChatSession()
    with pytest.raises(ModelFileError, match="model.gguf"):
        s.load(bad)
    assert s.worker_pid is None
    with pytest.raises(NoModelLoaded):
        list(s.send("hi"))


def test_worker_killed_mid_reply_is_explained_and_restarted(model_path) -> None:
    s = ChatSession(sampling=SamplingParams(max_tokens=2000, ignore_eos=True))
    s.load(model_path, LoadOptions(context=4096, threads=2))
    try:
        pid = s.worker_pid
        with pytest.raises(WorkerDied) as err:
            for ev in s.send("Write a long story."):
                if isinstance(ev, TextDelta):
                    os.kill(pid, signal.SIGKILL)  # what the OOM killer does
        assert err.value.returncode == -signal.SIGKILL
        assert "out-of-memory" in str(err.value) and str(s.log_path) in str(err.value)
        assert s.history[-1].role == "assistant" and s.history[-1].status == "error"
        s.sampling = SamplingParams(max_tokens=5, ignore_eos=True)
        _, done, _ = reply(s.send("Hello again"))  # a fresh worker, same model, same history
        assert done.stats.completion_tokens == 5 and s.worker_pid not in (None, pid)
    finally:
        s.close()


def test_worker_native_abort_is_explained(model_path) -> None:
    s = ChatSession()
    s.load(model_path, LoadOptions(context=256, threads=1))
    try:
        os.kill(s.worker_pid, signal.SIGABRT)
        with pytest.raises(WorkerDied, match="aborted"):
            s._client.count_tokens([{"role": "user", "content": "x"}])
    finally:
        s.close()


def test_unsupported_architecture_names_the_file_and_llama_cpp_reason(tmp_path) -> None:
    import gguf
    import numpy as np

    from localllm.errors import ModelLoadError

    path = tmp_path / "alien.gguf"
    writer = gguf.GGUFWriter(str(path), "notanarch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    s = ChatSession()
    with pytest.raises(ModelLoadError) as err:
        s.load(path)
    assert str(path) in str(err.value) and "unknown model architecture: 'notanarch'" in str(err.value)
    assert s.worker_pid is None and path.exists()


def test_worker_leaves_cleanly_and_logs_llama_cpp(model_path) -> None:
    s = ChatSession()
    s.load(model_path, LoadOptions(context=256, threads=1))
    client = s._client
    proc = client._proc
    s.close()
    assert proc.returncode == 0
    log = client.log_path.read_text()
    assert "llama_model_loader" in log and "Fatal Python error" not in log


def _cache_bandwidth(gb_s: float) -> None:
    from localllm.config import state
    from localllm.machine import bandwidth

    state.write_json(bandwidth.cache_path(), {bandwidth.cpu_key(): {"gb_s": gb_s}})


def test_each_reply_says_its_decode_against_the_memory_bandwidth_limit(model_path, tmp_path, monkeypatch) -> None:
    """F7: decode speed as a percentage of the memory-bandwidth roofline, live and per reply, where this
    machine's bandwidth is known (cached by `localllm hw`, F4, recommend: mid-chat too); a chat never
    measures it."""
    from localllm.chat.calibration import Calibration
    from localllm.chat.report import full_report, stats_line

    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    s = ChatSession(sampling=SamplingParams(max_tokens=24, ignore_eos=True, seed=2))
    try:
        s.load(model_path, LoadOptions(context=1024, threads=2))
        _, done, _ = reply(s.send("Hi."))
        assert done.stats.decode_tok_s and done.stats.limit_tok_s is None
        assert done.stats.to_dict()["percent_of_limit"] is None and "BW limit" not in stats_line(done.stats)

        _cache_bandwidth(20.0)  # measured meanwhile (F4's `b`, `localllm hw` in another terminal)
        live = []
        for ev in s.send("And again."):
            if isinstance(ev, TextDelta) and not live and (now := s.live_stats()) and now.decode_tok_s:
                live.append(now)
            if isinstance(ev, ReplyDone):
                done = ev
        stats = done.stats
        assert live and live[0].limit_tok_s and live[0].percent_of_limit  # while streaming too
        assert stats.limit_tok_s == pytest.approx(Calibration.for_model(s.model).limit_tok_s(stats))
        assert stats.percent_of_limit == pytest.approx(100 * stats.decode_tok_s / stats.limit_tok_s)
        assert f"{stats.percent_of_limit:.0f}% of {stats.limit_tok_s:.0f} tok/s BW limit" in stats_line(stats)
        assert "memory-bandwidth limit" in full_report(stats)
        _cache_bandwidth(40.0)  # the roofline is the bandwidth over the bytes a token reads
        assert Calibration.for_model(s.model).limit_tok_s(stats) == pytest.approx(2 * stats.limit_tok_s)
    finally:
        s.close()
