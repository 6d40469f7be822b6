"""Memory and speed estimates: KV arithmetic, llama.cpp's own buffer figures, the embedded GGUF's tensor
table, published file sizes, bad inputs, and calibration from measured runs."""

from __future__ import annotations

import dataclasses
import json

import pytest

from localllm.errors import LocalLLMError, ModelFileError
from localllm.machine import calibration, estimate, weights
from localllm.machine.estimate import EstimateError, estimate_memory, estimate_speed, kv_cache_bytes
from localllm.models import catalog
from localllm.models.catalog import CatalogError, ModelSpec
from localllm.models.gguf_check import read_layout
from tests.hubserver import hub_config, hub_server  # noqa: F401

MiB = 1024**2


@pytest.fixture
def llama8b() -> ModelSpec:
    return catalog.get("llama-3.1-8b")


@pytest.fixture
def embedded(model_path) -> ModelSpec:
    return ModelSpec.from_gguf(model_path)


def test_kv_cache_llama_3_1_8b_at_8k_is_one_gib(llama8b) -> None:
    # 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 8192 tokens x 2 bytes
    assert kv_cache_bytes(llama8b, 8192, "f16") == 1024 * MiB
    assert kv_cache_bytes(llama8b, 8192, "q8_0") == 544 * MiB  # 34 bytes per 32 values
    assert kv_cache_bytes(llama8b, 8192, "q4_0") == 288 * MiB


def test_kv_cache_matches_llama_cpp_log_for_the_embedded_model(embedded) -> None:
    # llama.cpp printed "KV buffer size = 45.00 MiB" (2048 cells) and 180.00 MiB (8192) for this file
    assert kv_cache_bytes(embedded, 2048) == 45 * MiB
    assert kv_cache_bytes(embedded, 8192) == 180 * MiB
    assert kv_cache_bytes(embedded, 2000) == 45 * MiB  # llama.cpp pads the context to 256


def test_sliding_window_layers(llama8b) -> None:
    gemma = catalog.get("gemma-3-1b")  # 26 layers, window 512, every 6th layer global
    assert gemma.sliding_layers == 22
    full = kv_cache_bytes(gemma, 32768, swa_full=True)
    per_cell_layer = 2 * gemma.kv_heads * gemma.head_dim * 2
    assert full == 26 * 32768 * per_cell_layer
    # llama.cpp without swa_full keeps window + ubatch cells (padded to 256) in a sliding layer
    assert kv_cache_bytes(gemma, 32768, swa_full=False) == (4 * 32768 + 22 * 1024) * per_cell_layer
    # transformers keeps exactly the window
    assert kv_cache_bytes(gemma, 32768, runtime="transformers") == (4 * 32768 + 22 * 512) * per_cell_layer
    assert catalog.get("gemma-2-9b").sliding_layers == 21  # alternating
    assert llama8b.sliding_layers == 0


def test_compute_buffer_matches_llama_cpp_sched_reserve(embedded) -> None:
    # "CPU compute buffer size = 99.38 / 126.38 / 166.38 MiB" at n_ctx 2048 / 6144 / 8192
    assert estimate.compute_buffer_bytes(embedded, 2048) == pytest.approx(99.375 * MiB, abs=0.01 * MiB)
    assert estimate.compute_buffer_bytes(embedded, 6144) == pytest.approx(126.375 * MiB, abs=0.01 * MiB)
    assert estimate.compute_buffer_bytes(embedded, 8192) == pytest.approx(166.375 * MiB, abs=0.01 * MiB)


def test_embedded_gguf_weights_come_from_its_tensor_table(embedded, model_path) -> None:
    layout = read_layout(model_path)
    est = estimate_memory(embedded, "gguf", "Q4_1", 2048, calibrate=False)
    assert est.weight_source == "tensor table"
    assert est.weight_bytes == layout.tensor_bytes  # 92.10 MiB, as llama.cpp's CPU_Mapped buffer says
    assert est.weight_bytes == pytest.approx(92.10 * MiB, abs=0.01 * MiB)
    assert est.bits_per_weight == pytest.approx(5.74, abs=0.01)  # the "Q4_1" label would say 5.0
    assert {t.ggml_type for t in layout.tensors if t.name == "token_embd.weight"} == {"Q8_0"}
    # Measured peak RSS of the worker on an AMD EPYC (AVX2, AVX-512, no AMX: nothing in this file is
    # repacked there): 204.0 MiB for a short reply at 2048, 561.8 MiB with 7832 tokens at 8192. The
    # CPU's flags are given, not read from the host: the figure belongs to that CPU.
    amd = ("avx2", "avx512f")
    short = estimate_memory(embedded, "gguf", "Q4_1", 2048, fill=27, calibrate=False, cpu_flags=amd)
    assert short.reclaimable_cpu == 0
    assert short.rss_bytes / MiB == pytest.approx(204.0, rel=0.05)
    long = estimate_memory(embedded, "gguf", "Q4_1", 8192, fill=7832, calibrate=False, cpu_flags=amd)
    assert long.rss_bytes / MiB == pytest.approx(561.8, rel=0.05)
    # An AMX Xeon with extra buffers on copies its Q4_1/Q8_0 matrices to the AMX buffer: the mapped pages
    # they were read from stay in RSS (reclaimable), what must fit does not change.
    amx = estimate_memory(embedded, "gguf", "Q4_1", 2048, fill=27, calibrate=False, cpu_flags=(*amd, "amx_int8"))
    matrices = sum(t.nbytes for t in layout.tensors if t.name != "token_embd.weight"
                   and t.ggml_type in ("Q4_1", "Q8_0"))
    assert amx.reclaimable_cpu == matrices and amx.ram_bytes == short.ram_bytes
    # what a chat screen asks before loading: the whole context filled is the default
    worst = estimate.estimate_file(model_path, 8192)
    assert worst.ram_bytes >= long.ram_bytes and worst.compute_cpu <= worst.compute_cpu_reserved + 80 * MiB


def test_label_estimate_is_close_to_the_real_file(embedded) -> None:
    label = estimate_memory(catalog.get("smollm2-135m"), "gguf", "Q4_1", 2048, calibrate=False)
    table = estimate_memory(embedded, "gguf", "Q4_1", 2048, calibrate=False)
    assert label.weight_source == "bits-per-weight table"
    assert label.weight_bytes == pytest.approx(table.weight_bytes, rel=0.01)


@pytest.mark.parametrize("model, quant, published", [
    ("smollm2-360m", "Q2_K", 219e6), ("smollm2-360m", "Q4_K_M", 271e6), ("smollm2-360m", "Q8_0", 386e6),
    ("gemma-2-27b", "Q4_K_M", 16_645_383_008), ("gemma-2-27b", "Q8_0", 28_937_388_896),
])
def test_label_estimates_match_published_file_sizes(model, quant, published) -> None:
    """Sizes of real files on the Hub (bartowski's SmolLM2-360M; a Gemma-2-27B imatrix set): small
    models keep Q8_0 embeddings and fall back from K-quants where rows don't divide into 256."""
    spec = catalog.get(model) if model != "gemma-2-27b" else ModelSpec(
        id="gemma-2-27b", name="gemma-2-27b-it", params=27_227_128_320, layers=46, hidden=4608, ffn=36864,
        heads=32, kv_heads=16, head_dim=128, vocab=256000, max_context=8192, tied_embeddings=True)
    est = estimate_memory(spec, "gguf", quant, 2048, calibrate=False)
    assert est.weight_bytes == pytest.approx(published, rel=0.03)


def test_transformers_formats_keep_embeddings_in_fp16(llama8b) -> None:
    emb = 2 * 128256 * 4096 * 2  # embeddings + untied head, fp16
    linear = llama8b.layer_params * llama8b.layers
    gptq = estimate_memory(llama8b, "gptq", "4bit-g128", 8192, gpu_layers=-1, calibrate=False)
    assert gptq.weight_bytes == pytest.approx(linear * 4.15625 / 8 + emb, rel=1e-6)
    assert gptq.weight_bytes / 1e9 == pytest.approx(5.73, abs=0.05)  # hugging-quants' checkpoint size
    nf4 = estimate_memory(llama8b, "bnb-nf4", "nf4", 8192, gpu_layers=-1, calibrate=False)
    dq = estimate_memory(llama8b, "bnb-nf4", "nf4-dq", 8192, gpu_layers=-1, calibrate=False)
    assert nf4.weight_bytes == pytest.approx(linear * 4.5 / 8 + emb, rel=1e-6)
    assert dq.weight_bytes == pytest.approx(linear * 4.127 / 8 + emb, rel=1e-6)
    fp16 = estimate_memory(llama8b, "fp16", "", 8192, gpu_layers=-1, calibrate=False)
    assert fp16.weight_bytes == llama8b.params * 2
    assert fp16.vram_bytes > fp16.weight_bytes + 1024 * MiB  # + KV cache + activations + CUDA context


def test_gpu_layers_split_memory(llama8b) -> None:
    cpu = estimate_memory(llama8b, "gguf", "Q4_K_M", 8192, calibrate=False)
    half = estimate_memory(llama8b, "gguf", "Q4_K_M", 8192, gpu_layers=16, calibrate=False)
    full = estimate_memory(llama8b, "gguf", "Q4_K_M", 8192, gpu_layers=-1, calibrate=False)
    assert cpu.vram_bytes == 0 and cpu.gpu_layers == 0
    assert half.kv_gpu == half.kv_cpu == 512 * MiB
    assert 0 < half.vram_bytes < full.vram_bytes and cpu.ram_bytes > half.ram_bytes > full.ram_bytes
    assert full.gpu_layers == 33 and full.overhead_gpu == estimate.CUDA_CONTEXT_BYTES
    assert full.weights_cpu == pytest.approx(128256 * 4096 * weights._body_bpw("Q4_K_M") / 8, rel=1e-6)


def test_quantized_kv_cache_assumes_flash_attention(llama8b) -> None:
    est = estimate_memory(llama8b, "gguf", "Q4_K_M", 8192, "q8_0", calibrate=False)
    assert est.kv_bytes == 544 * MiB and "flash attention" in est.notes[0]


@pytest.mark.parametrize("kwargs, words", [
    (dict(context=0), "at least 1 token"),
    (dict(context=131073), "at most 131072 tokens"),
    (dict(quant="Q9_Z"), "unknown GGUF quant"),
    (dict(fmt="awq"), "unknown format"),
    (dict(kv_type="q2"), "unknown KV-cache type"),
    (dict(fmt="gptq", quant="four bits"), "4bit-g128"),
])
def test_bad_inputs_are_clear_errors(llama8b, kwargs, words) -> None:
    with pytest.raises(EstimateError, match=words) as info:
        estimate_memory(llama8b, **kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, LocalLLMError)


LLAMA_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
                "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
                "tie_word_embeddings": False}


def test_spec_from_config_json(llama8b) -> None:
    spec = ModelSpec.from_config(LLAMA_CONFIG, "meta-llama/Llama-3.1-8B-Instruct")
    assert spec.params == pytest.approx(llama8b.params, rel=1e-4)
    assert (spec.layers, spec.kv_heads, spec.head_dim, spec.max_context) == (32, 8, 128, 131072)
    assert kv_cache_bytes(spec, 8192) == 1024 * MiB


def test_spec_from_a_nested_gemma3_config() -> None:
    kinds = (["sliding_attention"] * 5 + ["full_attention"]) * 4 + ["sliding_attention"] * 2
    cfg = {"model_type": "gemma3", "text_config": {
        "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144, "max_position_embeddings": 32768,
        "sliding_window": 512, "layer_types": kinds}}
    spec = ModelSpec.from_config(cfg, "google/gemma-3-1b-it")
    assert (spec.sliding_window, spec.sliding_pattern, spec.sliding_layers) == (512, 6, 22)


def test_config_json_missing_fields_are_named() -> None:
    cfg = {k: v for k, v in LLAMA_CONFIG.items() if k not in ("num_hidden_layers", "vocab_size")}
    with pytest.raises(CatalogError) as info:
        ModelSpec.from_config(cfg, "someone/broken-model")
    msg = str(info.value)
    assert "someone/broken-model" in msg and "num_hidden_layers (number of layers)" in msg
    assert "vocab_size (vocabulary size)" in msg
    with pytest.raises(CatalogError, match="not a JSON object"):
        ModelSpec.from_config(["not", "a", "dict"])  # type: ignore[arg-type]


def test_corrupt_gguf_header_is_a_clear_error(tmp_path, model_path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + b"\xff" * 40)
    with pytest.raises(ModelFileError, match="broken.gguf.*(truncated|damaged)"):
        ModelSpec.from_gguf(bad)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(open(model_path, "rb").read(4 * MiB))
    with pytest.raises(ModelFileError, match="truncated"):
        ModelSpec.from_gguf(cut)
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        ModelSpec.from_gguf(text)


def test_unknown_catalog_model() -> None:
    with pytest.raises(CatalogError, match="unknown model 'gpt-17'.*llama-3.1-8b"):
        catalog.get("gpt-17")


def test_catalog_is_complete_and_consistent() -> None:
    specs = catalog.load_catalog()
    assert len(specs) >= 20
    assert specs[0].params < 0.2e9 and specs[-1].params > 65e9
    for spec in specs:
        per_layer = 2 * spec.hidden * spec.heads * spec.head_dim + 2 * spec.hidden * spec.kv_heads * spec.head_dim
        per_layer += 3 * spec.hidden * spec.ffn * max(1, spec.experts)  # a mixture of experts: all of them
        arch = spec.layers * per_layer + spec.embedding_params + spec.output_params
        assert arch == pytest.approx(spec.params, rel=0.002), spec.id  # the numbers agree with each other
        assert spec.fp16_repo and spec.gguf_repo and "{quant}" in spec.gguf_file
    assert json.dumps([s.to_dict() for s in specs])


def test_speed_is_the_bandwidth_roofline_times_efficiency(llama8b) -> None:
    est = estimate_memory(llama8b, "gguf", "Q4_K_M", 8192, calibrate=False)
    speed = estimate_speed(llama8b, est, cpu_gb_s=30.0, calibrate=False)
    assert speed.roofline_tok_s == pytest.approx(30e9 / speed.bytes_per_token)
    assert speed.tok_s < speed.roofline_tok_s and 40 < speed.percent_of_limit < 90
    gpu = estimate_memory(llama8b, "gguf", "Q4_K_M", 8192, gpu_layers=-1, calibrate=False)
    assert estimate_speed(llama8b, gpu, 30.0, 1008.0, calibrate=False).tok_s > 20 * speed.tok_s


def test_measured_runs_calibrate_later_estimates(llama8b) -> None:
    est = estimate_memory(llama8b, "gguf", "Q4_K_M", 4096, calibrate=False)
    raw = estimate_speed(llama8b, est, 30.0, calibrate=False).tok_s
    for measured in (0.5, 0.6, 0.4):
        calibration.record_measurement(model="x", fmt="gguf", quant="Q4_K_M", device="cpu", context=4096,
                                    predicted_tok_s=10.0, measured_tok_s=10.0 * measured,
                                    predicted_ram_bytes=1000 * MiB, measured_ram_bytes=1010 * MiB)
    tuned = estimate_speed(llama8b, est, 30.0)
    assert tuned.calibration == pytest.approx(0.5) and tuned.runs == 3
    assert tuned.tok_s == pytest.approx(raw * 0.5)
    assert estimate_speed(llama8b, dataclasses.replace(est, gpu_layers=33), 30.0, 900.0).calibration is None
    calibrated = estimate_memory(llama8b, "gguf", "Q4_K_M", 4096)
    assert calibrated.ram_bytes - est.ram_bytes == 10 * MiB
    calibration.calibration_path().unlink()


def test_spec_from_a_hub_repo_through_the_loopback_hub(hub_server, tmp_path) -> None:  # noqa: F811
    from localllm.hub.repos import RepoNotFound

    hub_server.add_repo("acme/llama-like", {"config.json": json.dumps(LLAMA_CONFIG).encode()})
    hub_server.add_repo("acme/broken", {"config.json": b'{"hidden_size": 64}'})
    hub_server.add_repo("acme/only-gguf", {"m-Q4_K_M.gguf": b"GGUF"})
    cfg = hub_config(hub_server, tmp_path / "hub")
    spec = catalog.spec_from_hub("acme/llama-like", cfg=cfg)
    assert spec.fp16_repo == "acme/llama-like" and spec.source == "config.json" and spec.layers == 32
    with pytest.raises(CatalogError, match="acme/broken lacks num_hidden_layers"):
        catalog.spec_from_hub("acme/broken", cfg=cfg)
    with pytest.raises(CatalogError, match="no config.json"):
        catalog.spec_from_hub("acme/only-gguf", cfg=cfg)
    with pytest.raises(RepoNotFound, match="no model repo acme/nope"):
        catalog.spec_from_hub("acme/nope", cfg=cfg)


def test_a_mixture_of_experts_reads_its_experts_slower_than_dense_weights(monkeypatch) -> None:
    olmoe, dense = catalog.get("olmoe-1b-7b"), catalog.get("llama-3.2-1b")

    def speeds(spec):
        est = estimate_memory(spec, "gguf", "Q4_K_M", 2048, calibrate=False)
        slow = estimate_speed(spec, est, 30.0, fill=512, calibrate=False).tok_s
        with monkeypatch.context() as m:
            m.setitem(estimate.EXPERT_EFFICIENCY, "cpu", 1.0)  # as if experts read like dense layers
            fast = estimate_speed(spec, est, 30.0, fill=512, calibrate=False).tok_s
        return slow, fast

    slow, fast = speeds(olmoe)
    # the chosen experts are most of what a token reads, so the experts' rate moves most of the time
    assert fast * estimate.EXPERT_EFFICIENCY["cpu"] < slow < fast
    assert speeds(dense)[0] == speeds(dense)[1]  # a dense model has no experts
