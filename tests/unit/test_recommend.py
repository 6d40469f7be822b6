"""Recommendations on three recorded machine profiles (CPU-only 16 GB, one 8 GB GPU, one 24 GB GPU),
graded against free memory; plus the nothing-fits path and the CLI."""

from __future__ import annotations

import copy
import json

import pytest

from localllm.machine.estimate import EstimateError
from localllm.machine.hardware import HardwareInfo
from localllm.machine.quality import quality_index, quality_params
from localllm.machine.recommend import Wishes, recommend
from localllm.models import catalog

GiB = 1024**3
AVX2 = ["avx", "avx2", "fma", "f16c"]


def _cpu(model: str, cores: int, flags: list[str]) -> dict:
    return {"model": model, "arch": "x86_64", "physical_cores": cores, "logical_cores": 2 * cores,
            "usable_cores": 2 * cores, "flags": flags}


def _mem(total: float, available: float) -> dict:
    return {"total_bytes": int(total * GiB), "available_bytes": int(available * GiB), "swap_total_bytes": 0,
            "swap_free_bytes": 0, "limit_note": ""}


def _card(name: str, total: float, free: float, gb_s: float, cc: str, processes=()) -> dict:
    return {"index": 0, "name": name, "vendor": "nvidia", "total_bytes": int(total * GiB),
            "free_bytes": int(free * GiB), "used_bytes": int((total - free) * GiB), "utilization_pct": 0,
            "compute_capability": cc, "bus_width_bits": None, "mem_clock_mhz": None, "bandwidth_gb_s": gb_s,
            "unified_memory": False, "processes": list(processes), "notes": []}


# Recorded profiles: what `localllm hw --json` says on such machines (desktop sessions hold some VRAM).
PROFILES = {
    "cpu16": {"cpu": _cpu("Intel Core i5-1135G7", 4, AVX2 + ["avx512f"]), "memory": _mem(15.5, 11.0),
              "disk": None, "gpus": [], "gpu_reason": "No NVIDIA GPU: NVML found no device",
              "cpu_bandwidth_gb_s": 35.0},
    "gpu8": {"cpu": _cpu("AMD Ryzen 5 5600X", 6, AVX2), "memory": _mem(31.3, 24.0), "disk": None,
             "gpus": [_card("NVIDIA GeForce RTX 3070", 8.0, 7.4, 448.0, "8.6")],
             "driver_version": "550.54.14", "cuda_version": "12.4", "cpu_bandwidth_gb_s": 40.0},
    "gpu24": {"cpu": _cpu("AMD Ryzen 9 7950X", 16, AVX2 + ["avx512f"]), "memory": _mem(62.5, 50.0),
              "disk": None, "gpus": [_card("NVIDIA GeForce RTX 4090", 23.99, 23.3, 1008.1, "8.9")],
              "driver_version": "550.54.14", "cuda_version": "12.4", "cpu_bandwidth_gb_s": 60.0},
}


def machine(name: str, **changes) -> HardwareInfo:
    data = copy.deepcopy(PROFILES[name])
    data.update(changes)
    return HardwareInfo.from_dict(data)


def run(name: str, context: int = 8192, use: str = "chat", **hw_changes):
    return recommend(machine(name, **hw_changes), catalog.load_catalog(), Wishes(context=context, use=use))


def test_cpu_only_16gb_puts_gguf_first_and_marks_cuda_formats() -> None:
    rec = run("cpu16")
    top = rec.top(10)
    assert all(p.format == "gguf" and p.verdict == "CPU only" for p in top)
    assert 2e9 < max(catalog.get(p.model).params for p in top[:3]) < 5e9  # a 3B at reading speed
    assert top[0].tok_s >= 10
    cuda = [p for p in rec.picks if p.format in ("gptq", "bnb-nf4", "bnb-int8")]
    assert cuda and all(p.needs_cuda and "needs CUDA" in p.why for p in cuda)
    last_gguf = max(i for i, p in enumerate(rec.picks) if p.format == "gguf" and p.tok_s >= 5)
    assert all(rec.picks.index(p) > last_gguf for p in cuda)
    assert any("GGUF (llama.cpp) comes first" in n for n in rec.notes)
    assert all(p.ram_bytes <= rec.ram_budget for p in rec.picks)


def test_a_mixture_of_experts_is_ranked_between_its_active_and_total_size() -> None:
    """OLMoE-1B-7B (6.9B weights, 1.3B read per token) is not rated as a 7B: the geometric mean, ~3B."""
    olmoe = catalog.get("olmoe-1b-7b")
    assert 2.5e9 < quality_params(olmoe) < 3.5e9 < olmoe.params
    assert quality_params(catalog.get("llama-3.1-8b")) == catalog.get("llama-3.1-8b").params  # dense: as is
    q = {m: quality_index(catalog.get(m), "gguf", "Q4_K_M")[0] for m in ("qwen2.5-1.5b", "olmoe-1b-7b", "gemma-3-4b")}
    assert q["qwen2.5-1.5b"] < q["olmoe-1b-7b"] < q["gemma-3-4b"]


def test_cpu_only_quality_and_speed_pull_in_opposite_directions() -> None:
    quality, speed = run("cpu16", use="quality").picks[0], run("cpu16", use="speed").picks[0]
    assert catalog.get(quality.model).params > 8e9 and quality.tok_s >= 2
    assert catalog.get(speed.model).params < 2e9 and speed.tok_s > 3 * quality.tok_s


def test_8gb_gpu_runs_a_7_to_8b_model_fully_on_the_gpu() -> None:
    rec = run("gpu8")
    best = rec.picks[0]
    assert best.verdict == "full GPU" and best.format == "gguf"
    assert 7e9 < catalog.get(best.model).params < 9e9
    assert best.vram_bytes <= rec.vram_budget == int(7.4 * GiB * 0.9)
    assert best.tok_s > 40 and "fits on the NVIDIA GeForce RTX 3070" in best.why
    nemo = next(p for p in rec.picks if p.model == "mistral-nemo-12b" and p.quant == "Q4_K_M")
    assert nemo.verdict == "partial offload" and 0 < nemo.gpu_layers < 40
    assert nemo.tok_s < best.tok_s / 3  # the layers left on the CPU set the pace
    gptq = next(p for p in rec.picks if p.model == "qwen2.5-3b" and p.format == "gptq")
    assert gptq.verdict == "full GPU" and "needs CUDA" not in gptq.why
    # a 7B GPTQ checkpoint keeps a 152k x 3584 fp16 embedding and head, and transformers reads an
    # 8k prompt in one pass: it does not fit 6.7 GiB, while the same model as GGUF does
    qwen7 = {p.format: p for p in rec.picks + rec.rejected if p.model == "qwen2.5-7b"}
    assert qwen7["gptq"].verdict != "full GPU" and qwen7["gguf"].verdict == "full GPU"


def test_24gb_gpu_fits_a_24_to_32b_model_and_offloads_a_70b() -> None:
    rec = run("gpu24")
    assert rec.picks[0].verdict == "full GPU" and catalog.get(rec.picks[0].model).params > 20e9
    llama70 = next(p for p in rec.picks if p.model == "llama-3.1-70b" and p.quant == "Q4_K_M")
    assert llama70.verdict == "partial offload" and 20 < llama70.gpu_layers < 80
    assert llama70.vram_bytes <= rec.vram_budget and llama70.ram_bytes <= rec.ram_budget
    best_quality = run("gpu24", use="quality").picks[0]
    assert catalog.get(best_quality.model).params > 65e9
    fp16_8b = next(p for p in rec.picks if p.model == "llama-3.1-8b" and p.format == "fp16")
    assert fp16_8b.verdict == "full GPU" and fp16_8b.quality_hint == "reference quality"
    nf4 = next(p for p in rec.picks if p.model == "llama-3.1-8b" and p.format == "bnb-nf4")
    assert nf4.download_bytes == catalog.get("llama-3.1-8b").params * 2  # bnb quantizes the fp16 at load
    assert "seed 002" in nf4.quality_hint


def test_graded_against_free_not_total_vram() -> None:
    busy = _card("NVIDIA GeForce RTX 4090", 23.99, 3.0, 1008.1, "8.9",
                 processes=[{"pid": 4242, "name": "python3", "used_bytes": int(20 * GiB)}])
    rec = run("gpu24", gpus=[busy])
    assert rec.vram_budget == int(3.0 * GiB * 0.9)
    assert all(p.vram_bytes <= rec.vram_budget for p in rec.picks)
    assert not [p for p in rec.picks if p.verdict == "full GPU" and catalog.get(p.model).params > 4e9]
    assert rec.picks[0].verdict != "full GPU" or catalog.get(rec.picks[0].model).params < 4e9


def test_largest_context_per_kv_type() -> None:
    rec = run("gpu8")
    for pick in rec.top(5):
        ctx = pick.max_context
        assert ctx["q4_0"] >= ctx["q8_0"] >= ctx["f16"] >= 8192
        assert ctx["q4_0"] <= catalog.get(pick.model).max_context


def test_nothing_fits_offers_fixes_with_new_estimates() -> None:
    rec = run("cpu16", context=32768, memory={**_mem(4.0, 1.2)})
    assert rec.picks == [] and rec.fixes
    for fix in rec.fixes:
        assert fix.pick.fits and fix.pick.ram_bytes <= rec.ram_budget
    whats = " | ".join(f.what for f in rec.fixes)
    assert "KV cache" in whats and "shorten the context" in whats


def test_closing_a_vram_hog_is_a_fix() -> None:
    hog = _card("NVIDIA GeForce RTX 3070", 8.0, 0.3, 448.0, "8.6",
                processes=[{"pid": 999, "name": "game.exe", "used_bytes": int(7.5 * GiB)}])
    rec = run("gpu8", context=32768, memory=_mem(4.0, 0.8), gpus=[hog])
    assert rec.picks == []
    assert any("close game.exe (pid 999" in f.what and f.pick.verdict == "full GPU" for f in rec.fixes)


def test_context_beyond_every_model_and_bad_use() -> None:
    assert run("gpu24", context=10**7).picks == []
    with pytest.raises(EstimateError, match="unknown use"):
        run("gpu24", use="vibes")


def test_json_is_complete() -> None:
    data = json.loads(json.dumps(run("gpu8").to_dict(5)))
    pick = data["picks"][0]
    assert {"verdict", "tok_s", "why", "max_context", "estimate", "quality_hint"} <= set(pick)
    assert pick["estimate"]["vram_bytes"] == pick["vram_bytes"]
    assert {"gguf", "gptq", "bnb-nf4", "bnb-int8", "fp16"} <= set(data["best_per_format"])


def test_cli_recommend_for_this_machine(capsys) -> None:
    from localllm.cli import main as cli

    assert cli.main(["recommend", "--context", "4096", "-n", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert 1 <= len(data["picks"]) <= 3 and data["wishes"]["context"] == 4096
    assert cli.main(["recommend", "--context", "2048", "-n", "2"]) == 0
    text = capsys.readouterr().out
    assert "For 2,048 tokens of context, ranked for chat (good quality at a readable speed)" in text and " 1 " in text and "get: " in text


def test_cli_recommend_one_gguf_file_and_bad_context(capsys, model_path) -> None:
    from localllm.cli import main as cli

    assert cli.main(["recommend", "--model", model_path, "--context", "2048", "--json"]) == 0
    pick = json.loads(capsys.readouterr().out)["picks"][0]
    assert pick["estimate"]["weight_source"] == "tensor table" and pick["quant"] == "Q4_1"
    assert cli.main(["recommend", "--model", model_path, "--context", "9000"]) == 2
    assert "at most 8192 tokens" in capsys.readouterr().err
    assert cli.main(["recommend", "--context", "0"]) == 2


def test_a_download_larger_than_the_free_disk_is_said() -> None:
    rec = run("gpu24", disk={"path": "/models", "free_bytes": int(5e9), "total_bytes": int(500e9)})
    fp16 = next(p for p in rec.picks if p.model == "llama-3.1-8b" and p.format == "fp16")
    assert "the download (16.1 GB) is more than the 5.0 GB free on disk" in fp16.why
    small = next(p for p in rec.picks if p.model == "llama-3.2-1b" and p.quant == "Q4_K_M")
    assert "free on disk" not in small.why


@pytest.mark.parametrize(("profile", "key"), [("cpu-16gb", "cpu16"), ("gpu-8gb", "gpu8"), ("gpu-24gb", "gpu24")])
def test_recommend_for_a_recorded_machine(profile, key, capsys) -> None:
    from localllm.cli import main as cli

    assert cli.main(["recommend", "--hw", profile, "--context", "8192", "--json", "-n", "3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    expected = run(key).top(3)
    assert [(p["model"], p["format"], p["quant"]) for p in shown["picks"]] == [
        (p.model, p.format, p.quant) for p in expected]


def test_recommend_for_an_unreadable_machine_says_what_to_give(tmp_path, capsys) -> None:
    from localllm.cli import main as cli

    bad = tmp_path / "hw.json"
    bad.write_text("{not json")
    assert cli.main(["recommend", "--hw", str(bad)]) == 1
    assert "Give a file written by `localllm hw --json` or one of cpu-16gb" in capsys.readouterr().err
