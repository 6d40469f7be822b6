"""The quantize screen in the real app (F6): a checked plan that follows the choices, a refusal that
says why, a real llama.cpp job with progress, the result loaded into the chat; cancel leaves nothing."""

from __future__ import annotations

import pytest
from textual.widgets import Button, Input, Select, Static

from localllm.config import LoadOptions
from localllm.models import library
from localllm.ui.app import LocalLLMApp
from localllm.ui.screens.quantize_screen import QuantizeScreen
from tests.ui.test_app import SIZE, wait_for

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier


def plan_text(screen) -> str:
    return str(screen.query_one("#q-plan", Static).render())


async def test_plan_refusal_run_and_load(tmp_path) -> None:
    app = LocalLLMApp(load_options=LoadOptions(context=512))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        first = app.session.model.path
        await pilot.press("f6")
        await wait_for(pilot, lambda: isinstance(app.screen, QuantizeScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.query_one("#q-source", Select).value == first)
        await wait_for(pilot, lambda: plan_text(screen).startswith("Plan: "))
        # GPTQ from a GGUF is refused in the plan line, with what to do instead
        screen.query_one("#q-target", Select).value = "gptq"
        await wait_for(pilot, lambda: "--to safetensors" in plan_text(screen))
        assert screen.plan is None and screen.query_one("#q-gptq").display
        out = tmp_path / "tui.Q8_0.gguf"
        screen.query_one("#q-target", Select).value = "Q8_0"
        screen.query_one("#q-out", Input).value = str(out)
        await wait_for(pilot, lambda: screen.plan is not None and screen.plan.out == out)
        assert "GiB of disk" in plan_text(screen) and "GiB of RAM" in plan_text(screen)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.result is not None, timeout=120)
        assert out.exists() and str(out) in {e.id for e in library.list_models()}
        # the finished job plans again: the output it wrote is there now, so a second run is refused
        await wait_for(pilot, lambda: "exists already" in plan_text(screen), timeout=60)
        assert screen.plan is None and str(out) in plan_text(screen)
        load = screen.query_one("#q-load", Button)
        assert load.display and load.has_focus
        await pilot.press("enter")
        await wait_for(pilot, lambda: getattr(app.session.model, "path", None) == str(out))
        assert app.session.model.quant == "Q8_0" and app.session.model.path != first


async def test_escape_cancels_a_running_job_and_leaves_nothing(tmp_path) -> None:
    from localllm.models.embedded import embedded_model_path

    app = LocalLLMApp(load_options=LoadOptions(context=512))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None)
        screen = QuantizeScreen(sources=[("embedded", str(embedded_model_path()))])
        app.push_screen(screen)
        await wait_for(pilot, lambda: screen.plan is not None)
        out = tmp_path / "never.gguf"
        screen.query_one("#q-target", Select).value = "F16"  # the slowest to write: time to cancel
        screen.query_one("#q-out", Input).value = str(out)
        await wait_for(pilot, lambda: screen.plan is not None and screen.plan.out == out)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen._cancel is not None)
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen._cancel is None, timeout=60)
        assert "cancelled" in str(screen.query_one("#q-status").render()).lower()
        assert not out.exists()
        assert list(tmp_path.iterdir()) == [] and isinstance(app.screen, QuantizeScreen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, QuantizeScreen))
