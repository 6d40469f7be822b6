"""The models screen lists Ollama's and LM Studio's models with their source (issue 23), picked by ref."""

from __future__ import annotations

from textual.app import App
from textual.widgets import OptionList

from localllm.models import endpoints
from localllm.ui.screens.open_model import OpenModelScreen
from tests.unit.test_stores import env, store_tree  # noqa: F401  (the built stores)
from tests.waits import wait_for


async def test_the_picker_lists_store_models_with_their_source_and_their_ref(env, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(endpoints, "USUAL_PORTS", {})  # no server probes
    picked: list = []

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(OpenModelScreen(), picked.append)

    app = Host()
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen))
        options = app.screen.query_one(OptionList)
        await wait_for(pilot, lambda: any("lmstudio acme/Split-GGUF" in str(o.prompt) for o in options.options),
                       timeout=60)
        prompts = {o.id: str(o.prompt) for o in options.options}
        assert "ollama:smollm2:135m" not in prompts  # one option per file: the first of its sources picks it
        smol = prompts["ollama:hf.co/bartowski/SmolLM2-GGUF:Q4_1"]
        assert "Q4_1" in smol and "ollama smollm2:135m" in smol and "lmstudio lmstudio-community/" in smol
        assert not any("broken" in p or "gone" in p for p in prompts.values())  # unusable: not offered
        index = list(prompts).index("lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf")
        options.focus()
        options.highlighted = index
        await pilot.press("enter")
        await wait_for(pilot, lambda: picked, timeout=30)
    assert picked == ["lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf"]
