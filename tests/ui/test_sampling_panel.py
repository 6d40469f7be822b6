"""Issue 24 in the TUI: the metrics panel shows the values the loaded model samples with and where each
came from, the settings box says what the model uses, and a value changed there wins for this run."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from localllm.config.settings import Settings, load_settings, save_settings, settings_path
from localllm.models import catalog
from localllm.ui.app import LocalLLMApp
from localllm.ui.screens.settings_screen import SettingsScreen
from localllm.ui.widgets.metrics_panel import MetricsPanel
from tests.waits import wait_for

pytestmark = pytest.mark.slow  # a real model worker


async def test_the_panel_and_the_settings_box_show_the_model_s_sampling() -> None:
    settings = Settings(save_conversations=False, models={"smollm2-135m": {"top_k": 12}})
    save_settings(settings)  # the box saves the file: a pinned model table must survive that
    app = LocalLLMApp(settings=settings)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: app.session.model is not None and "temp" in app.query_one(MetricsPanel).rows)
        rows = app.query_one(MetricsPanel).rows
        assert rows["temp"] == "0.2 catalog" and rows["top-p"] == "0.9 catalog" and rows["top-k"] == "12 saved"
        assert "sampling (from)" in str(app.query_one(MetricsPanel).render())
        assert app.session.sampling.temperature == 0.2
        # the new conversation's system prompt is the model's (its catalog entry), named in the panel
        assert rows["system"] == "catalog" and app.session.system_prompt == catalog.get("smollm2-135m").system_prompt

        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
        screen = app.screen
        box = screen.query_one("#setting-temperature", Input)
        box.focus()
        await pilot.pause()
        assert "The loaded model uses 0.2 (from catalog)" in str(screen.query_one("#settings-help", Static).render())
        box.value = "0.5"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        assert app.session.sampling.temperature == 0.5 and app.session.sampling.top_p == 0.9
        assert app.query_one(MetricsPanel).rows["temp"] == "0.5 user"
    assert load_settings(settings_path()).models == {"smollm2-135m": {"top_k": 12}}
