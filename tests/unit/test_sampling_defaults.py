"""Each model's own sampling defaults and where each value came from (issue 24), with real files: a GGUF
carrying general.sampling.*, a checkpoint folder's generation_config.json, the embedded model's catalog
entry, and the user's values (this run's and the ones saved for one model) over all of them."""

from __future__ import annotations

import json
import shutil

import pytest

from localllm.backends.base import StopText
from localllm.config import SamplingParams
from localllm.config.settings import (
    DEFAULT_SYSTEM_PROMPT,
    Settings,
    SettingsError,
    load_settings,
    read_settings,
    save_settings,
)
from localllm.models.embedded import FILENAME
from localllm.models.ref import ModelRef
from localllm.models.sampling_defaults import (
    SamplingRequest,
    catalog_entry,
    resolve_sampling,
)
from tests.gguf_files import with_kv_copy

DEFAULTS = SamplingParams()


def values(resolved) -> dict:
    return {k: (v["value"], v["from"]) for k, v in resolved.to_dict().items()}


@pytest.fixture(scope="module")
def tuned_gguf(tmp_path_factory, model_path) -> str:
    """The embedded model's GGUF with llama.cpp's general.sampling keys added."""
    return with_kv_copy(model_path, tmp_path_factory.mktemp("gguf") / "tuned.gguf",
                        {"general.sampling.temp": 0.6, "general.sampling.top_k": 20,
                         "general.sampling.penalty_repeat": 1.05})


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "my-checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "temperature": 0.6, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05,
         "eos_token_id": [2, 7], "bos_token_id": 1}))
    return folder


def test_the_embedded_model_takes_its_card_values_from_the_catalog() -> None:
    got = values(resolve_sampling("embedded"))
    assert got["temperature"] == (0.2, "catalog") and got["top_p"] == (0.9, "catalog")
    assert got["top_k"] == (DEFAULTS.top_k, "default") and got["repeat_penalty"] == (DEFAULTS.repeat_penalty,
                                                                                     "default")
    assert catalog_entry(ModelRef.parse("embedded")).id == "smollm2-135m"


def test_a_gguf_with_general_sampling_keys_gives_its_own(tuned_gguf) -> None:
    got = values(resolve_sampling(tuned_gguf))
    assert got["temperature"] == (0.6, "gguf")  # float32 in the file, read back as 0.6
    assert got["top_k"] == (20, "gguf") and got["repeat_penalty"] == (1.05, "gguf")
    assert got["top_p"] == (DEFAULTS.top_p, "default")  # not a catalog model: the app's default


def test_a_gguf_s_own_values_win_over_its_catalog_entry(tuned_gguf, tmp_path) -> None:
    named = shutil.copyfile(tuned_gguf, tmp_path / "SmolLM2-135M-Instruct-Q4_K_M.gguf")  # a catalog name
    got = values(resolve_sampling(named))
    assert got["temperature"] == (0.6, "gguf") and got["top_p"] == (0.9, "catalog")


def test_a_gguf_without_sampling_keys_and_a_broken_value(model_path, tmp_path) -> None:
    plain = shutil.copyfile(model_path, tmp_path / "plain.gguf")
    assert set(resolve_sampling(plain).sources.values()) == {"default"}
    bad = with_kv_copy(model_path, tmp_path / "bad.gguf", {"general.sampling.temp": 99.0,
                                                           "general.sampling.top_p": 0.5})
    resolved = resolve_sampling(bad)
    assert values(resolved)["temperature"] == (DEFAULTS.temperature, "default")  # out of range: skipped
    assert values(resolved)["top_p"] == (0.5, "gguf")
    assert any("temperature" in n and "bad.gguf" in n for n in resolved.notes)


def test_a_checkpoint_folder_s_generation_config(checkpoint) -> None:
    got = values(resolve_sampling(checkpoint))
    assert got["temperature"] == (0.6, "generation_config") and got["top_p"] == (0.8, "generation_config")
    assert got["top_k"] == (20, "generation_config") and got["repeat_penalty"] == (1.05, "generation_config")
    assert got["stop_token_ids"] == ([2, 7], "generation_config")  # its EOS tokens end a reply
    assert got["min_p"] == (DEFAULTS.min_p, "default")


def test_do_sample_false_is_greedy(checkpoint) -> None:
    path = checkpoint / "generation_config.json"
    path.write_text(json.dumps({"do_sample": False, "temperature": 0.6, "top_p": 0.8, "eos_token_id": 2}))
    got = values(resolve_sampling(checkpoint))
    assert got["temperature"] == (0.0, "generation_config")
    assert got["top_p"] == (DEFAULTS.top_p, "default")  # transformers ignores it when greedy
    assert got["stop_token_ids"] == ([2], "generation_config")


def test_a_damaged_generation_config_is_a_note_not_a_failure(checkpoint) -> None:
    (checkpoint / "generation_config.json").write_text("{not json")
    resolved = resolve_sampling(checkpoint)
    assert set(resolved.sources.values()) == {"default"}
    assert "generation_config.json" in resolved.notes[0]


def test_a_catalog_checkpoint_folder_without_generation_config(tmp_path) -> None:
    folder = tmp_path / "SmolLM2-135M-Instruct"
    folder.mkdir()
    got = values(resolve_sampling(folder))
    assert got["temperature"] == (0.2, "catalog")


@pytest.mark.parametrize("model", ["embedded", "gguf", "checkpoint"])
def test_the_user_wins_over_every_model_source(model, tuned_gguf, checkpoint) -> None:
    """This run's value over everything; a value saved for this model over the model's own and the
    global settings; a global setting (not the default) over the model's own."""
    model = {"embedded": "embedded", "gguf": tuned_gguf, "checkpoint": str(checkpoint)}[model]
    key = {"embedded": "smollm2-135m"}.get(model, model)  # a table may name the catalog id or the path
    settings = Settings(temperature=1.3, top_k=7, models={key: {"temperature": 0.4, "top_p": 0.5}})
    request = SamplingRequest(run={"temperature": 0.9}, settings=settings, base=SamplingParams(seed=3))
    resolved = resolve_sampling(model, request)
    got = values(resolved)
    assert got["temperature"] == (0.9, "user")
    assert got["top_p"] == (0.5, "saved")
    assert got["top_k"] == (7, "settings")
    assert resolved.params.seed == 3  # not a model's to choose
    request.run.clear()
    assert values(resolve_sampling(model, request))["temperature"] == (0.4, "saved")


def test_global_settings_at_the_defaults_do_not_hide_the_model_s_values() -> None:
    """A settings file written by an older localllm holds every default: the model's values still win."""
    got = values(resolve_sampling("embedded", SamplingRequest(settings=Settings())))
    assert got["temperature"] == (0.2, "catalog")


def test_tables_are_found_by_any_name_of_the_model(model_path) -> None:
    for key in ("embedded", model_path, FILENAME.removesuffix(".gguf"), "smollm2-135m"):
        request = SamplingRequest(settings=Settings(models={key: {"top_k": 11}}))
        assert values(resolve_sampling("embedded", request))["top_k"] == (11, "saved"), key


def test_saved_model_tables_round_trip_and_old_files_still_load(tmp_path) -> None:
    old = tmp_path / "old.toml"
    old.write_text('model = ""\ntemperature = 0.7\ntop_p = 0.95\n')  # before issue 24: no tables
    assert load_settings(old).models == {}
    path = save_settings(Settings(temperature=0.5, models={"embedded": {"temperature": 0.3, "top_k": 12}}),
                         tmp_path / "settings.toml")
    text = path.read_text()
    assert '[models.embedded]' in text
    loaded = load_settings(path)
    assert loaded.temperature == 0.5 and loaded.models == {"embedded": {"temperature": 0.3, "top_k": 12}}


def test_a_bad_model_table_names_the_model_and_the_key(tmp_path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('temperature = 0.5\n[models."a.gguf"]\ntemprature = 0.3\n[models.b]\ntop_p = 7\n'
                    '[models.c]\ntop_k = 5\n')
    settings, errors = read_settings(path)
    assert settings.temperature == 0.5 and settings.models == {"c": {"top_k": 5}}  # the good ones kept
    messages = " ".join(str(e) for e in errors)
    assert "'temprature' for model 'a.gguf'" in messages and "'top_p' for model 'b'" in messages
    with pytest.raises(SettingsError):
        save_settings(Settings(models={"x": {"top_p": 2.0}}), tmp_path / "out.toml")


def test_the_record_and_the_line() -> None:
    resolved = resolve_sampling("embedded", SamplingRequest(run={"top_k": 5}))
    assert resolved.to_dict()["temperature"] == {"value": 0.2, "from": "catalog"}
    assert resolved.to_dict()["top_k"] == {"value": 5, "from": "user"}
    assert "temp 0.2 catalog" in resolved.line() and "top-k 5 user" in resolved.line()
    json.dumps(resolved.to_dict())  # plain JSON


@pytest.mark.parametrize("pieces, stops, shown", [
    (["Hello", " wor", "ld"], ["<end>"], "Hello world"),
    (["Paris.<e", "nd>more"], ["<end>"], "Paris."),  # split over two tokens
    (["a<", "b"], ["<end>"], "a<b"),  # a false start is shown once it cannot be a stop
    (["x\nUser:", " hi"], ["\nUser:", "###"], "x"),
])
def test_stop_strings_end_the_reply_and_are_not_shown(pieces, stops, shown) -> None:
    stop = StopText(stops)
    out, hit = "", False
    for piece in pieces:
        text, hit = stop.feed(piece)
        out += text
        if hit:
            break
    else:
        out += stop.flush()
    assert out == shown and hit == (shown != "".join(pieces))


def test_a_new_conversation_s_system_prompt_has_a_source_too() -> None:
    catalog_prompt = catalog_entry(ModelRef.parse("embedded")).system_prompt
    assert catalog_prompt and catalog_prompt != DEFAULT_SYSTEM_PROMPT
    got = resolve_sampling("embedded")
    assert (got.system_prompt, got.sources["system_prompt"]) == (catalog_prompt, "catalog")
    assert got.to_dict()["system_prompt"] == {"value": catalog_prompt, "from": "catalog"}
    assert "system catalog" in got.line() and catalog_prompt not in got.line()
    # a model the catalog has no prompt for gets the app's
    other = resolve_sampling("http://127.0.0.1:9/v1#some-model")  # a server's model: no catalog entry
    assert (other.system_prompt, other.sources["system_prompt"]) == (DEFAULT_SYSTEM_PROMPT, "default")
    # the global setting counts only where it is not the app's own default; the model's table, then this run win
    for request, want in [
        (SamplingRequest(settings=Settings()), (catalog_prompt, "catalog")),
        (SamplingRequest(settings=Settings(system_prompt="Mine.")), ("Mine.", "settings")),
        (SamplingRequest(settings=Settings(system_prompt="Mine.", models={"embedded": {"system_prompt": "Saved."}})),
         ("Saved.", "saved")),
        (SamplingRequest(run={"system_prompt": ""}, settings=Settings(models={"embedded": {"system_prompt": "S."}})),
         ("", "user")),  # an empty prompt typed by the user means none, and stays
    ]:
        got = resolve_sampling("embedded", request)
        assert (got.system_prompt, got.sources["system_prompt"]) == want, request
        assert not got.notes  # not taken for an unknown sampling knob


def test_a_model_table_may_pin_a_system_prompt_and_round_trips(tmp_path) -> None:
    saved = Settings(models={"embedded": {"system_prompt": "Réponds en français.", "temperature": 0.3}})
    path = save_settings(saved, tmp_path / "settings.toml")
    assert load_settings(path).models == saved.models
    path.write_text('[models."embedded"]\nsystem_prompt = 3\n')
    settings, errors = read_settings(path)
    assert settings.models == {} and "system_prompt" in " ".join(str(e) for e in errors)
