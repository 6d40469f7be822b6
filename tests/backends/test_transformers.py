"""The transformers backend on real weights: the embedded SmolLM2 GGUF dequantized to a safetensors
checkpoint (once per session), then chatted with in fp32, bitsandbytes int8 and NF4 on the CPU."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("bitsandbytes")

from localllm.chat.session import ChatSession  # noqa: E402
from localllm.config import LoadOptions, SamplingParams  # noqa: E402
from localllm.errors import ModelFileError, ModelLoadError  # noqa: E402
from localllm.models.checkpoint_check import inspect_checkpoint  # noqa: E402
from tests.replies import collect, stop_at_first_piece  # noqa: E402

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier


def chat(path: str, opts: LoadOptions, tokens: int = 12):
    s = ChatSession(sampling=SamplingParams(max_tokens=tokens, ignore_eos=True, seed=1))
    info = s.load(path, opts, backend="transformers")
    try:
        text, done = collect(s.send("What is the capital of France?"))
        return info, text, done.stats
    finally:
        s.close()


def test_converted_checkpoint_is_plain_safetensors(checkpoint) -> None:
    info = inspect_checkpoint(checkpoint)
    assert info.weight_format == "safetensors" and info.quant == "none"
    assert info.model_type == "llama" and info.size_bytes > 500e6  # fp32: 4 bytes x 134M
    assert "quantization_config" not in json.loads(open(f"{checkpoint}/config.json").read())


@pytest.mark.parametrize("quantization,label", [("none", "float32"), ("int8", "int8"), ("nf4", "nf4")])
def test_chat_in_each_precision(checkpoint, quantization, label) -> None:
    info, text, stats = chat(checkpoint, LoadOptions(context=512, quantization=quantization))
    assert info.backend == "transformers" and info.quant == label
    assert len(text.split()) >= 2  # real words from real weights
    assert stats.completion_tokens == 12 and stats.decode_tok_s > 0 and stats.cpu_total_s > 0
    assert 0 < stats.ttft_s < stats.wall_s and stats.rss_peak_mib > 200


def test_nf4_takes_less_memory_than_fp32(checkpoint) -> None:
    fp32, _, _ = chat(checkpoint, LoadOptions(context=256), tokens=2)
    nf4, _, _ = chat(checkpoint, LoadOptions(context=256, quantization="nf4"), tokens=2)
    assert nf4.size_bytes < fp32.size_bytes * 0.6  # the model's own footprint, embeddings kept


def test_cancel_stops_generation(checkpoint) -> None:
    s = ChatSession(sampling=SamplingParams(max_tokens=400, ignore_eos=True, seed=1))
    s.load(checkpoint, LoadOptions(context=1024), backend="transformers")
    try:
        done = stop_at_first_piece(s, "Tell a long story.")
        assert done.turn.status == "stopped" and done.stats.completion_tokens < 400
    finally:
        s.close()


def test_bad_options_and_folders(checkpoint, tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="unknown quantization 'int3'"):
        chat(checkpoint, LoadOptions(quantization="int3"))
    with pytest.raises(ModelFileError, match="no config.json"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ModelFileError, match="no weight files"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelFileError, match="pickle"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ModelFileError, match="unreadable"):
        inspect_checkpoint(tmp_path)


def test_missing_extra_says_how_to_install(monkeypatch) -> None:
    import importlib.util

    from localllm.backends import registry
    from localllm.errors import BackendNotInstalled

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers"
                        else real(name, *a))
    with pytest.raises(BackendNotInstalled, match=r"localllm\[transformers\]"):
        registry.create("transformers")
