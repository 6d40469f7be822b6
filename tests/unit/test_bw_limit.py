"""One memory-bandwidth roofline (machine.estimate.decode_roofline) behind the chat panel's "BW limit"
and the timing runs' "decode % of BW limit": on the embedded model's real tensor table."""

from __future__ import annotations

import pytest

from localllm.bench.results import RowResult
from localllm.machine.estimate import decode_roofline, estimate_speed, gguf_as_loaded
from localllm.models.catalog import ModelSpec

GB_S = 30.0


def _row(model_path: str, backend: str = "llama_cpp", **extra) -> RowResult:
    model = {"path": model_path, "backend": backend, "n_ctx": 1024, "n_gpu_layers": 0,
             "extra": {"kv_type": "f16", "extra_bufts": True, **extra}}
    return RowResult("r", {}, model=model, size_bytes=100 * 2**20, prompt_tokens=40)


def test_a_timing_row_and_a_chat_reply_share_one_roofline(model_path) -> None:
    spec = ModelSpec.from_gguf(model_path)
    fill = 40 + 60 // 2
    limit = decode_roofline(spec, gguf_as_loaded(spec, 1024, 0, fill=fill), GB_S, fill=fill)
    assert limit == pytest.approx(estimate_speed(spec, gguf_as_loaded(spec, 1024, 0, fill=fill), GB_S,
                                                 fill=fill, calibrate=False).roofline_tok_s)
    row = _row(model_path)
    row.reps = [{"decode_tok_s": 0.5 * limit, "prompt_tokens": 40, "completion_tokens": 60, "ttft_s": 0.1}]
    row.summarize(GB_S * 1e9)
    assert row.columns["bw_pct"].mean == pytest.approx(50.0)


def test_a_batch_step_reads_the_weights_once_and_every_sequences_kv_cache(model_path) -> None:
    spec = ModelSpec.from_gguf(model_path)
    est = gguf_as_loaded(spec, 1024, 0, fill=500)
    one, four = decode_roofline(spec, est, GB_S, fill=500), decode_roofline(spec, est, GB_S, fill=500, batch=4)
    assert four < one  # more KV read per step
    assert 1 / four - 1 / one == pytest.approx(3 * (1 / decode_roofline(spec, est, GB_S, fill=500) -
                                                    1 / decode_roofline(spec, est, GB_S, fill=1)), rel=0.05)


def test_the_kv_type_as_loaded_moves_the_roofline(model_path) -> None:
    spec = ModelSpec.from_gguf(model_path)
    f16 = decode_roofline(spec, gguf_as_loaded(spec, 2048, 0, "f16", fill=2000), GB_S, fill=2000)
    q8 = decode_roofline(spec, gguf_as_loaded(spec, 2048, 0, "q8_0", fill=2000), GB_S, fill=2000)
    assert q8 > f16  # a q8_0 cache is read in about half the bytes


def test_without_a_tensor_table_the_file_size_is_the_roofline(model_path) -> None:
    row = _row(model_path, backend="remote")
    row.reps = [{"decode_tok_s": 100.0, "prompt_tokens": 40, "completion_tokens": 60, "ttft_s": 0.1}]
    row.summarize(GB_S * 1e9)
    assert row.columns["bw_pct"].mean == pytest.approx(100 * 100.0 * row.size_bytes / (GB_S * 1e9))
    row.summarize(None)  # bandwidth not measured: no column value, not a zero
    assert row.columns["bw_pct"].mean is None


def test_the_loaded_models_estimate_counts_the_kv_type_it_was_loaded_with(model_path, tmp_path, monkeypatch) -> None:
    from localllm.backends.base import ModelInfo

    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))  # no measured runs calibrate it: the estimator alone
    from localllm.chat.calibration import Calibration

    def estimate(kv_type: str) -> float | None:
        info = ModelInfo(name="m", path=model_path, backend="llama_cpp", quant="Q4_1", n_ctx=8192,
                         extra={"kv_type": kv_type, "extra_bufts": True})
        calibration = Calibration.for_model(info)
        assert calibration is not None
        return calibration.estimate_mib(fill=8000)

    f16, q8 = estimate("f16"), estimate("q8_0")
    assert f16 and q8 and f16 - q8 > 50  # SmolLM2's f16 cache at 8k tokens is 180 MiB: about half saved
