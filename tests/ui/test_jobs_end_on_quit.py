"""Quitting the app with a job running cancels it. A quantization job's child (and the child's own
child) is killed and its partial output removed: the job is real, its child the silent fake GPTQModel
Python of tests/fake_jobs.py, so no model is needed. A comparison stops and closes its model's worker."""

from __future__ import annotations

import os
import signal
import time

import pytest
from textual.app import App
from textual.widgets import Input, Select

from localllm.chat.session import ChatSession
from localllm.config import LoadOptions, SamplingParams
from localllm.ui.screens.compare_screen import CompareScreen
from localllm.ui.screens.quantize_screen import QuantizeScreen
from tests.fake_jobs import fake_gptq_python, read_ready, running_in_group, tiny_checkpoint
from tests.waits import wait_for

SIZE = (120, 40)
START_S = 120.0  # starting a Python on a loaded 2-core host
ENDED_S = 30.0  # the job polls its cancel every 0.1 s; generous for a loaded host


async def test_quitting_with_a_running_quantize_job_kills_its_child_and_removes_its_partial(
        tmp_path, monkeypatch) -> None:
    ready = tmp_path / "ready"
    monkeypatch.setenv("LOCALLLM_GPTQ_PYTHON", str(fake_gptq_python(tmp_path, ready)))
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out" / "tiny-gptq"
    app = App()
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = QuantizeScreen(sources=[("tiny", str(ckpt))])
            await app.push_screen(screen)
            await wait_for(pilot, lambda: screen.query_one("#q-source", Select).value == str(ckpt))
            screen.query_one("#q-target", Select).value = "gptq"
            screen.query_one("#q-out", Input).value = str(out)
            await wait_for(pilot, lambda: screen.plan is not None and screen.plan.out == out)
            await pilot.press("ctrl+s")
            await wait_for(pilot, ready.exists, timeout=START_S)
            child, grandchild = read_ready(ready)
            assert sorted(running_in_group(child)) == sorted([child, grandchild])
            assert (out.parent / "tiny-gptq.partial").exists()
            app.exit()  # quit, the job still running
        deadline = time.monotonic() + ENDED_S
        while running_in_group(child) or list(out.parent.iterdir()):
            assert time.monotonic() < deadline, (running_in_group(child), list(out.parent.iterdir()))
            time.sleep(0.05)
    finally:
        if ready.exists():
            try:
                os.killpg(read_ready(ready)[0], signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow  # real model workers
async def test_quitting_with_a_running_comparison_cancels_it_and_closes_its_worker() -> None:
    from tests.unit.test_compare import workers_alive

    started = time.time() - 1  # create_time has a coarse clock
    session = ChatSession(sampling=SamplingParams(max_tokens=2000, ignore_eos=True, seed=1))
    screen = CompareScreen("Write an endless story.", session, load_options=LoadOptions(context=512, threads=1))
    app = App()
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(screen)
        screen.query_one("#compare-specs", Input).value = "embedded, embedded, embedded"
        await pilot.click("#compare-run")
        await wait_for(pilot, lambda: screen.columns and screen.columns[0].text)  # the first is writing
        cancel = screen._cancel
        app.exit()
    assert cancel is not None and cancel.is_set()
    deadline = time.monotonic() + 120  # the reply stops, the worker is asked to leave (killed after 5 s)
    while workers_alive(started) or not screen.idle.is_set():
        assert time.monotonic() < deadline, workers_alive(started)
        time.sleep(0.1)
