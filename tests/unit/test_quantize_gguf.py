"""GGUF re-quantization with llama.cpp's quantizer, on the real embedded model."""

from __future__ import annotations

import threading

import pytest

from localllm.errors import ModelFileError
from localllm.models.gguf_check import inspect_gguf
from localllm.quantize.gguf import QuantizeCancelled, QuantizeError, parse_qtype, requantize_gguf
from tests.gguf_files import bad_arch_copy

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier


@pytest.fixture(scope="module")
def q8(model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("quant") / "smol.Q8_0.gguf"
    seen: list[tuple[int, int]] = []
    info = requantize_gguf(model_path, out, "q8_0", progress=lambda i, n: seen.append((i, n)))
    return out, info, seen


def test_output_is_a_valid_gguf_of_the_new_quant(q8, model_path) -> None:
    out, info, seen = q8
    checked = inspect_gguf(out)
    assert checked.quant == info.quant == "Q8_0"
    assert checked.n_params == inspect_gguf(model_path).n_params
    assert checked.size_bytes > inspect_gguf(model_path).size_bytes  # 8.5 bits a weight vs Q4_1's 5
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached every tensor
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left behind


def test_unknown_qtype_names_the_known_ones(model_path, tmp_path) -> None:
    with pytest.raises(QuantizeError, match=r"Unknown quantization type 'Q9_9'.*Q4_K_M"):
        requantize_gguf(model_path, tmp_path / "x.gguf", "Q9_9")
    assert parse_qtype("q4_k_m") == ("Q4_K_M", 15)
    assert not list(tmp_path.iterdir())


def test_missing_or_bad_source_is_a_model_file_error(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        requantize_gguf(tmp_path / "missing.gguf", tmp_path / "x.gguf", "Q8_0")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        requantize_gguf(junk, tmp_path / "x.gguf", "Q8_0")
    assert not (tmp_path / "x.gguf").exists()


def test_refusals_before_any_work(model_path, tmp_path) -> None:
    with pytest.raises(QuantizeError, match="already quantized"):
        requantize_gguf(model_path, tmp_path / "x.gguf", "Q8_0", allow_requantize=False)
    with pytest.raises(QuantizeError, match="is the source file"):
        requantize_gguf(model_path, model_path, "Q8_0")
    with pytest.raises(QuantizeError, match="does not exist"):
        requantize_gguf(model_path, tmp_path / "no" / "x.gguf", "Q8_0")


def test_native_failure_is_quoted_and_nothing_is_written(model_path, tmp_path) -> None:
    src = bad_arch_copy(model_path, tmp_path / "bad.gguf")
    with pytest.raises(QuantizeError, match="unknown model architecture: 'llamb'"):
        requantize_gguf(src, tmp_path / "out.gguf", "Q8_0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gguf"]


def test_cancel_mid_way_kills_the_job_and_leaves_nothing(model_path, tmp_path) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 5:
            cancel.set()

    with pytest.raises(QuantizeCancelled):
        requantize_gguf(model_path, tmp_path / "out.gguf", "Q8_0", progress=progress, cancel=cancel)
    assert not list(tmp_path.iterdir())
