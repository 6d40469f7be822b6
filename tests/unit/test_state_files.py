"""State files shared by app instances (localllm.config.state): concurrent updates keep every write,
a corrupt file is set aside with a warning instead of being read as empty, no temp file is left."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os

import pytest

from localllm.config import state
from localllm.machine import calibration

N = 50


def _record_runs(home: str, name: str, barrier) -> None:
    """One app instance: N measured runs through the public function, started with the other."""
    os.environ["LOCALLLM_HOME"] = home
    barrier.wait()
    for i in range(N):
        calibration.record_measurement(model=f"{name}-{i}", fmt="gguf", quant="Q4_K_M", device="cpu",
                                    context=512, predicted_tok_s=10.0, measured_tok_s=9.0)


def test_two_processes_recording_calibration_keep_every_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_record_runs, args=(str(tmp_path), name, barrier)) for name in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    runs = json.loads(calibration.calibration_path().read_text())["runs"]  # valid JSON, or this raises
    assert 2 * N <= 200  # the default keep: nothing was dropped by the cap
    assert sorted(r["model"] for r in runs) == sorted(f"{n}-{i}" for n in "ab" for i in range(N))
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.corrupt-*"))


@pytest.mark.parametrize("text", ['{"runs": [{"model": "x"', "[1, 2]", "\xff\xfe garbage"])
def test_a_corrupt_calibration_is_kept_aside_with_a_warning(tmp_path, monkeypatch, caplog, text) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    path = calibration.calibration_path()
    path.write_text(text, encoding="latin-1")
    with caplog.at_level(logging.WARNING, logger="localllm.config.state"):
        assert calibration.load_measurements() == []
    aside = list(tmp_path.glob("calibration.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text(encoding="latin-1") == text  # kept, byte for byte
    assert not path.exists()
    assert any(str(aside[0]) in r.getMessage() for r in caplog.records)
    calibration.record_measurement(model="m", fmt="gguf", quant="Q4_0", device="cpu", context=512,
                                measured_tok_s=5.0)
    assert [r["model"] for r in calibration.load_measurements()] == ["m"]
    assert len(list(tmp_path.glob("calibration.json.corrupt-*"))) == 1  # the good file was not moved


def test_a_second_corrupt_file_does_not_overwrite_the_first_one_kept(tmp_path) -> None:
    path = tmp_path / "cache.json"
    for text in ("{bad", "{worse"):
        path.write_text(text)
        assert state.read_json(path) == {}
    kept = sorted(p.read_text() for p in tmp_path.glob("cache.json.corrupt-*"))
    assert kept == ["{bad", "{worse"]


def test_a_file_repaired_before_the_lock_is_taken_is_not_set_aside(tmp_path, monkeypatch) -> None:
    """A reader saw a bad file, but by the time it holds the lock an update has replaced it."""
    path = tmp_path / "cache.json"
    path.write_text('{"k": 1}')
    real = state._parse
    seen = iter([(None, "not valid JSON (simulated)")])
    monkeypatch.setattr(state, "_parse", lambda p: next(seen, None) or real(p))
    assert state.read_json(path) == {"k": 1}
    assert path.exists() and not list(tmp_path.glob("*.corrupt-*"))


def test_writes_use_unique_temp_names_and_leave_none_behind(tmp_path, monkeypatch) -> None:
    path = tmp_path / "cache.json"
    temps = []
    real_replace = os.replace
    monkeypatch.setattr(state.os, "replace", lambda src, dst: (temps.append(src), real_replace(src, dst))[1])
    state.write_json(path, {"a": 1})
    state.update(path, lambda d: {**d, "b": 2})
    assert len(set(temps)) == 2 and all(os.path.dirname(t) == str(tmp_path) for t in temps)
    assert json.loads(path.read_text()) == {"a": 1, "b": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", "cache.json.lock"]


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path) -> None:
    path = tmp_path / "cache.json"
    state.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        state.update(path, lambda d: {**d, "bad": object()})  # not JSON-serializable
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", "cache.json.lock"]


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_new_name_is_never_replaced(tmp_path, monkeypatch, hard_links) -> None:
    if not hard_links:
        def no_link(src, dst):
            raise PermissionError("no hard links on this filesystem")
        monkeypatch.setattr(state.os, "link", no_link)
    path = state.write_text(tmp_path / "run.json", "first", replace=False)
    with pytest.raises(FileExistsError):
        state.write_text(path, "second", replace=False)
    assert path.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["run.json"]
