"""Settings: defaults, the TOML round trip, a message naming the key for each invalid value,
atomic saves, and LOCALLLM_HOME moving the file."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

import platformdirs
import pytest

from localllm.config import config_dir, state
from localllm.config import settings as settings_mod
from localllm.config.settings import (
    FIELDS,
    Settings,
    SettingsError,
    load_settings,
    load_settings_lenient,
    parse_field,
    save_settings,
    settings_path,
    to_load_options,
    to_sampling,
)
from localllm.errors import LocalLLMError


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))
    return tmp_path


def write(home: Path, text: str) -> Path:
    path = home / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_when_there_is_no_file(home) -> None:
    assert not (home / "settings.toml").exists()
    assert load_settings() == Settings()
    assert load_settings_lenient() == (Settings(), [])
    assert Settings().model == ""  # empty: the embedded model


def test_localllm_home_moves_the_file(home, monkeypatch) -> None:
    assert config_dir() == home
    assert settings_path() == home / "settings.toml"
    monkeypatch.delenv("LOCALLLM_HOME")
    assert settings_path() == Path(platformdirs.user_config_dir("localllm", appauthor=False)) / "settings.toml"


def test_round_trip_keeps_every_value(home) -> None:
    custom = Settings(model="/models/a b.gguf", context=8192, threads=3, gpu_layers=-1,
                      system_prompt='Say "hi"\nthen stop.', temperature=0.0, top_p=1.0, top_k=0, min_p=0.0,
                      repeat_penalty=1.0, max_tokens=64, seed=42, theme="my-own-theme",
                      save_conversations=False, endpoints=["http://127.0.0.1:8080", "https://gpu.example:8000/v1"],
                      api_key_env="MY_SERVER_KEY")
    path = save_settings(custom)
    assert path == home / "settings.toml"
    assert load_settings() == custom
    text = path.read_text()
    assert "# context size in tokens" in text  # the file documents itself
    assert tomllib.loads(text)["context"] == 8192


def test_every_field_has_a_description_and_a_type() -> None:
    for name, f in FIELDS.items():
        assert f.metadata["doc"], name
        assert name in settings_mod.TYPES


def test_partial_file_keeps_defaults_for_the_rest(home) -> None:
    write(home, 'temperature = 1\ntheme = "localllm-light"\n')
    s = load_settings()
    assert s.temperature == 1.0 and isinstance(s.temperature, float)  # TOML 1 means 1.0 here
    assert s.theme == "localllm-light" and s.context == Settings().context


def test_unknown_theme_name_is_not_an_error(home) -> None:
    write(home, 'theme = "somebody-elses-theme"\n')
    assert load_settings().theme == "somebody-elses-theme"  # user themes load later, in the app


INVALID = [
    ("model", "3", "a string"),
    ("kv_type", '"q2_k"', "one of 'f16'"),
    ("context", "5", "an integer from 128 to 1073741824"),
    ("context", '"big"', "an integer from 128"),
    ("context", "2048.0", "an integer from 128"),
    ("threads", "-2", "an integer from 0 to 1024"),
    ("gpu_layers", "-5", "an integer from -2"),
    ("extra_buffers", "\"sometimes\"", "one of 'auto', 'on', 'off'"),
    ("system_prompt", "[1, 2]", "a string"),
    ("temperature", "9.5", "a number from 0.0 to 5.0"),
    ("temperature", "nan", "a number from 0.0 to 5.0"),
    ("temperature", "true", "a number"),
    ("top_p", "1.5", "a number from 0.0 to 1.0"),
    ("top_k", "-1", "an integer from 0"),
    ("min_p", "-0.1", "a number from 0.0 to 1.0"),
    ("repeat_penalty", "0", "a number from 0.1 to 10.0"),
    ("max_tokens", "0", "an integer from 1"),
    ("seed", "-2", "an integer from -1 to 4294967295"),
    ("theme", '"  "', "a non-empty string"),
    ("save_conversations", '"yes"', "true or false"),
    ("model_folders", '"/models"', "a list of folder paths"),
    ("model_folders", '[""]', "a list of folder paths"),
    ("endpoints", '["localhost:8080"]', "a list of server URLs"),
    ("endpoints", '"http://127.0.0.1:8080"', "a list of server URLs"),
    ("api_key_env", '"MY KEY"', "an environment variable name"),
]


@pytest.mark.parametrize(("key", "toml_value", "rule"), INVALID)
def test_invalid_value_names_the_key_the_file_and_the_rule(home, key, toml_value, rule) -> None:
    path = write(home, f"{key} = {toml_value}\n")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert f"'{key}'" in message and str(path) in message and rule in message
    assert err.value.key == key and isinstance(err.value, LocalLLMError)
    # lenient mode: the same message as a warning, the default in its place
    settings, warnings = load_settings_lenient()
    assert getattr(settings, key) == getattr(Settings(), key)
    assert len(warnings) == 1 and f"'{key}'" in warnings[0] and "default" in warnings[0]


def test_every_field_has_an_invalid_case() -> None:
    assert {key for key, _, _ in INVALID} == set(FIELDS)


def test_unknown_key_is_named_with_the_known_ones(home) -> None:
    path = write(home, "temprature = 0.5\n")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert "'temprature'" in message and str(path) in message and "temperature" in message


def test_all_problems_reported_at_once_and_good_keys_kept_when_lenient(home) -> None:
    write(home, 'context = 1\ntop_p = 7\nthreads = 2\nbogus = 1\n')
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert len(err.value.problems) == 3
    for key in ("context", "top_p", "bogus"):
        assert f"'{key}'" in str(err.value)
    settings, warnings = load_settings_lenient()
    assert settings.threads == 2 and settings.context == Settings().context and len(warnings) == 3


def test_broken_toml_names_the_file(home) -> None:
    path = write(home, "n_ctx = = 3\n")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(path) in str(err.value) and "not valid TOML" in str(err.value)
    settings, warnings = load_settings_lenient()
    assert settings == Settings() and str(path) in warnings[0]


def test_parse_field_for_the_form() -> None:
    assert parse_field("context", " 4096 ") == 4096
    assert parse_field("temperature", "0") == 0.0
    assert parse_field("save_conversations", "False") is False
    assert parse_field("model", "  /m.gguf ") == "/m.gguf"
    assert parse_field("system_prompt", "  keep  ") == "  keep  "
    with pytest.raises(SettingsError, match=r"'context' must be an integer from 128 to 1073741824 \(got 'abc'\)"):
        parse_field("context", "abc")
    with pytest.raises(SettingsError, match="'top_p' must be a number from 0.0 to 1.0"):
        parse_field("top_p", "2")
    # saved servers: comma- or space-separated, trailing slashes and repeats dropped
    assert parse_field("endpoints", "http://a:1/, http://b:2  http://a:1") == ["http://a:1", "http://b:2"]
    assert parse_field("endpoints", "") == []
    with pytest.raises(SettingsError, match="'endpoints' must be a list of server URLs"):
        parse_field("endpoints", "http://a:1, ftp://b")


def test_save_refuses_invalid_values_and_keeps_the_old_file(home) -> None:
    save_settings(Settings(context=4096))
    before = (home / "settings.toml").read_bytes()
    with pytest.raises(SettingsError, match="'top_k'"):
        save_settings(dataclasses.replace(Settings(), top_k=-3))
    assert (home / "settings.toml").read_bytes() == before


@pytest.mark.parametrize("fail_at", ["write", "replace"])
def test_save_is_atomic(home, monkeypatch, fail_at) -> None:
    save_settings(Settings(context=4096))
    path = home / "settings.toml"
    before = path.read_bytes()
    if fail_at == "replace":
        def boom(*args, **kwargs):
            raise OSError("disk full")
        monkeypatch.setattr(state.os, "replace", boom)  # the store writes it
    else:
        real_fsync = os.fsync

        def boom(fd):  # the text is half on disk in the temp file when this fails
            real_fsync(fd)
            raise OSError("disk full")
        monkeypatch.setattr(state.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save_settings(Settings(context=8192))
    assert path.read_bytes() == before  # the old file, whole
    assert sorted(p.name for p in home.iterdir()) == ["settings.toml"]  # no temp file left behind


def test_save_creates_the_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "new" / "home"))
    path = save_settings(Settings())
    assert path.exists() and load_settings() == Settings()


def test_load_options_and_sampling_from_settings() -> None:
    s = Settings(context=4096, threads=3, gpu_layers=-1, temperature=0.2, top_p=0.9, top_k=20, min_p=0.1,
                 repeat_penalty=1.3, max_tokens=77, seed=-1)
    load = to_load_options(s)
    assert (load.context, load.threads, load.gpu_layers, load.seed) == (4096, 3, -1, 0)
    sampling = to_sampling(s)
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p) == (0.2, 0.9, 20, 0.1)
    assert (sampling.repeat_penalty, sampling.max_tokens, sampling.seed) == (1.3, 77, None)
    assert to_sampling(dataclasses.replace(s, seed=7)).seed == 7
    assert to_load_options(dataclasses.replace(s, seed=7)).seed == 7
    assert to_load_options(dataclasses.replace(s, api_key_env="VLLM_KEY")).api_key_env == "VLLM_KEY"


def test_no_textual_import() -> None:
    import subprocess
    import sys

    code = "import sys, localllm.config.settings, localllm.chat.conversations; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_model_folders_round_trip_and_an_old_file_without_them_loads(home) -> None:
    write(home, 'theme = "localllm-light"\n')  # written before model_folders existed
    assert load_settings().model_folders == []
    assert parse_field("model_folders", " /srv/models , ~/My Models,/srv/models") == ["/srv/models", "~/My Models"]
    save_settings(Settings(model_folders=["/srv/models", "~/My Models"]))
    assert load_settings().model_folders == ["/srv/models", "~/My Models"]


def test_an_old_file_with_the_old_key_names_loads_and_is_written_back_with_the_new_ones(home) -> None:
    path = write(home, 'n_ctx = 8192\nkv_cache_type = "q8_0"\ncpu_extra_buffers = "off"\nthreads = 3\n'
                       'gpu_layers = -1\nbackend = "remote"\ntemperature = 0.3\n')
    settings = load_settings()  # the retired `backend` is a notice, not an error
    assert (settings.context, settings.kv_type, settings.extra_buffers) == (8192, "q8_0", "off")
    assert (settings.threads, settings.gpu_layers, settings.temperature) == (3, -1, 0.3)
    _, warnings = load_settings_lenient()
    assert len(warnings) == 1 and "'backend'" in warnings[0] and "ignored" in warnings[0]
    save_settings(settings)
    data = tomllib.loads(path.read_text())
    assert (data["context"], data["kv_type"], data["extra_buffers"]) == (8192, "q8_0", "off")
    assert not {"n_ctx", "kv_cache_type", "cpu_extra_buffers", "backend"} & set(data)
    assert load_settings() == settings


def test_the_new_name_wins_over_the_old_and_an_old_key_error_names_both(home) -> None:
    write(home, "context = 4096\nn_ctx = 8192\n")
    assert load_settings().context == 4096
    write(home, "n_ctx = 5\n")
    with pytest.raises(SettingsError, match=r"'context' \(written as its old name 'n_ctx'\).* must be an integer"):
        load_settings()


@pytest.mark.parametrize(("new", "old", "value", "dest", "expected"), [
    ("--context", "--ctx", "4096", "context", 4096),
    ("--kv-type", "--kv", "q8_0", "kv_type", "q8_0"),
    ("--temperature", "--temp", "0.2", "temperature", 0.2),
    ("--system-prompt", "--system", "Be brief.", "system_prompt", "Be brief."),
    ("--threads", "--threads", "3", "threads", 3),
    ("--gpu-layers", "--gpu-layers", "auto", "gpu_layers", -2),
])
def test_both_cli_spellings_parse_to_the_same_value(new, old, value, dest, expected) -> None:
    from localllm.cli.main import build_parser

    parser = build_parser()
    for flag in (new, old):
        args = parser.parse_args(["chat", flag, value])
        assert getattr(args, dest) == expected, flag


@pytest.mark.parametrize(("argv", "dest", "expected"), [
    (["plan", "embedded", "{}", "512"], "context", 512),
    (["plan", "embedded", "{}", "q4_0"], "kv_type", "q4_0"),
    (["serve", "{}", "512"], "context", 512),
    (["bench", "{}", "512"], "context", 512),
    (["bench", "{}", "q8_0,f16"], "kv_type", "q8_0,f16"),
    (["recommend", "{}", "q8_0"], "kv_type", "q8_0"),
])
def test_commands_take_both_spellings(argv, dest, expected) -> None:
    from localllm.cli.main import build_parser

    flags = {"context": ("--context", "--ctx"), "kv_type": ("--kv-type", "--kv")}[dest]
    for flag in flags:
        args = build_parser().parse_args([flag if a == "{}" else a for a in argv])
        assert getattr(args, dest) == expected, flag


@pytest.mark.parametrize(("argv", "message"), [
    (["chat", "-p", "hi", "--top-p", "3"], "argument --top-p: must be a number from 0.0 to 1.0 (got '3')"),
    (["chat", "-p", "hi", "--max-tokens", "0"], "argument --max-tokens: must be an integer from 1 to"),
    (["--repeat-penalty", "0.05"], "argument --repeat-penalty: must be a number from 0.1 to 10.0"),
    (["chat", "--context", "0"], "argument --context/--ctx: must be an integer from 128 to"),
    (["chat", "--temp", "hot"], "argument --temperature/--temp: must be a number from 0.0 to 5.0"),
    (["plan", "--context", "0"], "argument --context/--ctx: must be an integer from 128 to"),  # planned 2048
    (["bench", "--ctx", "64"], "argument --context/--ctx: must be an integer from 128 to"),
    (["serve", "--threads", "-1"], "argument --threads: must be an integer from 0 to 1024"),
])
def test_a_flag_takes_what_its_setting_takes_and_is_refused_before_anything_loads(argv, message, capsys) -> None:
    """The sampling and load flags had no ranges: `--top-p 3` and `--max-tokens 0` ran without a word."""
    from localllm.cli.main import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_seed_random_on_the_command_line_is_a_fresh_seed_each_reply(home) -> None:
    from localllm.cli.main import build_parser
    from localllm.cli.run_options import run_options
    from localllm.config.settings import Settings

    load, request = run_options(build_parser().parse_args(["chat", "--seed", "random"]), Settings())
    assert request.base.seed is None and load.seed == 0
    load, request = run_options(build_parser().parse_args(["chat", "--seed", "7"]), Settings())
    assert request.base.seed == 7 and load.seed == 7


def test_load_options_fields_carry_the_knob_names_and_the_worker_reads_the_old_ones() -> None:
    from localllm.config import LoadOptions

    new = LoadOptions(context=4096, threads=2, gpu_layers=0, extra_buffers="off", kv_type="q8_0")
    assert LoadOptions.from_dict(vars(new)) == new  # the worker protocol's round trip
    old = {"n_ctx": 4096, "n_threads": 2, "n_gpu_layers": 0, "extra_bufts": "off", "kv_type": "q8_0"}
    assert LoadOptions.from_dict(old) == new
    settings_fields = set(FIELDS)
    assert {"context", "threads", "gpu_layers", "kv_type", "extra_buffers"} <= settings_fields & set(vars(new))


def test_gpu_layers_and_seed_take_their_words_in_the_file_and_the_form(home) -> None:
    """auto and random, as the CLI's --gpu-layers auto: -2 and -1 meant nothing to a reader."""
    from localllm.config import AUTO_LAYERS
    from localllm.config.settings import allowed, shown_value

    assert parse_field("gpu_layers", " Auto ") == AUTO_LAYERS and parse_field("gpu_layers", "12") == 12
    assert parse_field("seed", "random") == -1
    write(home, 'gpu_layers = "auto"\nseed = "random"\n')
    assert (load_settings().gpu_layers, load_settings().seed) == (AUTO_LAYERS, -1)
    assert shown_value("gpu_layers", AUTO_LAYERS) == "auto" and shown_value("gpu_layers", 8) == "8"
    assert shown_value("seed", -1) == "random" and "or 'auto'" in allowed("gpu_layers")
    with pytest.raises(SettingsError, match="or 'auto'"):
        parse_field("gpu_layers", "most")
    write(home, 'gpu_layers = "most"\n')
    with pytest.raises(SettingsError, match="gpu_layers"):
        load_settings()
