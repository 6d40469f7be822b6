"""Bad model files get an error that names the file and the reason, and are left untouched."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from localllm.errors import ModelFileError
from localllm.models.gguf_check import inspect_gguf


def test_embedded_model_reads(model_path: str) -> None:
    info = inspect_gguf(model_path)
    assert info.architecture == "llama"
    assert info.quant == "Q4_1"
    assert info.context_length == 8192
    assert info.has_chat_template
    assert 130e6 < info.n_params < 140e6
    assert 5.0 < info.bits_per_weight < 6.5  # Q4_1 label, but embeddings stay at higher precision


def _bad(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name,data,reason", [
    ("empty.gguf", b"", "empty"),
    ("random.gguf", random.Random(7).randbytes(4096), "not a GGUF file"),  # seeded: the same ids on every worker
    ("renamed.gguf", b"PK\x03\x04" + b"\0" * 100, "not a GGUF file"),
    ("header-only.gguf", b"GGUF\x03\x00\x00\x00", "truncated"),
    ("bad-version.gguf", b"GGUF\x63\x00\x00\x00" + b"\0" * 16, "version 99"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_files_are_named_with_a_reason(tmp_path, name, data, reason) -> None:
    path = _bad(tmp_path, name, data)
    with pytest.raises(ModelFileError) as err:
        inspect_gguf(path)
    assert str(path) in str(err.value)
    assert reason in str(err.value)
    assert path.read_bytes() == data  # nothing deleted or changed


def test_truncated_copy_of_a_real_model(tmp_path, model_path) -> None:
    with open(model_path, "rb") as fh:
        head = fh.read(20_000_000)
    path = _bad(tmp_path, "half.gguf", head)
    with pytest.raises(ModelFileError, match="truncated"):
        inspect_gguf(path)


def test_missing_file_and_directory(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        inspect_gguf(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileError, match="directory"):
        inspect_gguf(tmp_path)


@pytest.mark.parametrize(("number", "name"), [(30, "IQ4_XS"), (25, "IQ4_NL"), (19, "IQ2_XXS"), (15, "Q4_K_M"),
                                              (32, "BF16"), (999, "type 999")])
def test_every_file_type_gguf_knows_has_its_name(model_path, tmp_path, number, name) -> None:
    """Names come from gguf's own LlamaFileType: an IQ4_XS file says IQ4_XS, not "type 30"."""
    from tests.gguf_files import file_type_copy

    assert inspect_gguf(file_type_copy(model_path, tmp_path / "m.gguf", number)).quant == name


def test_one_quant_table() -> None:
    from localllm.models import quants

    assert set(quants.OFFERED) <= set(quants.file_types().values())
    assert quants.quantizer_types()["Q4_K_M"] == 15 and "IQ4_XS" not in quants.quantizer_types()
    assert set(quants.COMMON) <= set(quants.OFFERED) and all(q in quants.BITS_PER_WEIGHT for q in quants.COMMON)
