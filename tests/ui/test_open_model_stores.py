"""The models screen lists Ollama's and LM Studio's models with their source (issue 23), picked by ref."""

from __future__ import annotations

from textual.widgets import OptionList

from localllm.models import endpoints
from localllm.ui.screens.open_model import OpenModelScreen
from tests.ui.hosts import ScreenHost
from tests.unit.test_stores import env, store_tree  # noqa: F401  (the built stores)
from tests.waits import wait_for


async def test_the_picker_lists_store_models_with_their_source_and_their_ref(env, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(endpoints, "USUAL_PORTS", {})  # no server probes
    picked: list = []

    app = ScreenHost(OpenModelScreen(), picked.append)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen))
        options = app.screen.query_one(OptionList)
        last = "lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf"
        folder = str(env["folder"] / "sub" / "own-Q8_0.gguf")  # the last one listed
        await wait_for(pilot, lambda: any(o.id == folder for o in options.options), timeout=60)
        prompts = {o.id: str(o.prompt) for o in options.options}
        # one option per file: Ollama's and LM Studio's copies of the embedded model are that option
        assert not any("SmolLM2" in i or "smollm2" in i for i in prompts if i != "embedded")
        split = prompts["lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf"]
        assert split.startswith("acme/Split-GGUF/split-Q4_K_M.gguf · gguf Q4_K_M · ") and split.endswith(" · lmstudio")
        assert prompts[folder].endswith(" · folder")
        assert not any("broken" in p or "gone" in p for p in prompts.values())  # unusable: not offered
        index = list(prompts).index(last)
        options.focus()
        options.highlighted = index
        await pilot.press("enter")
        await wait_for(pilot, lambda: picked, timeout=30)
    assert picked == ["lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf"]


async def test_a_model_lm_studio_has_loaded_says_serving_now(env, monkeypatch) -> None:  # noqa: F811
    from localllm.models.stores import serving
    from tests.unit.test_store_serving import _closed_port, _Server

    monkeypatch.setattr(endpoints, "USUAL_PORTS", {})
    loaded = {"id": "acme/split", "object": "model", "type": "llm", "publisher": "acme", "arch": "llama",
              "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded", "max_context_length": 256}
    server = _Server({"/api/v0/models": {"object": "list", "data": [loaded]}})
    monkeypatch.setattr(serving, "LMSTUDIO_ADDRESS", ("127.0.0.1", server.port))
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{_closed_port()}")

    app = ScreenHost(OpenModelScreen())
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen))
            options = app.screen.query_one(OptionList)
            folder = str(env["folder"] / "sub" / "own-Q8_0.gguf")
            await wait_for(pilot, lambda: any(o.id == folder for o in options.options), timeout=60)
            prompts = {o.id: str(o.prompt) for o in options.options}
    finally:
        server.close()
    assert prompts["lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf"].endswith(" · lmstudio · serving now")
    assert [i for i, p in prompts.items() if "serving" in p] == ["lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf"]
