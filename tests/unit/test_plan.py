"""The load plan on recorded machines and on this one, with the GPU, the binding and the memory faked at the
library boundary; the embedded GGUF is real (its tensor table gives the weight bytes)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import localllm
from localllm.config import AUTO_LAYERS, LoadOptions
from localllm.machine import hardware
from localllm.machine.hardware import HardwareInfo
from localllm.runtime import binding
from localllm.runtime.plan import PlanRefused, make_plan, plan_for

MiB = 2**20
MACHINES = Path(localllm.__file__).parent / "data" / "machines"


def machine(name: str, **memory) -> HardwareInfo:
    hw = HardwareInfo.from_dict(json.loads((MACHINES / f"{name}.json").read_text()))
    if memory:
        hw.memory = dataclasses.replace(hw.memory, **memory)
    return hw


def test_a_cpu_machine_gets_no_gpu_layers_and_an_itemized_plan(model_path) -> None:
    plan = make_plan(model_path, LoadOptions(context=2048), machine("cpu-16gb"), offload=False)
    assert plan.fits and plan.placement == "CPU only" and plan.gpu_layers == 0
    cpu = plan.to_dict()["devices"]["cpu"]
    assert set(plan.to_dict()["devices"]) == {"cpu"}
    assert 60 * MiB < cpu["weights"] < 120 * MiB  # the 98 MB Q4_1 file's tensors
    assert cpu["kv_cache"] == 30 * 2 * 2048 * 3 * 64 * 2  # layers x K,V x ctx x kv heads x head dim x f16
    assert cpu["total"] == cpu["weights"] + cpu["kv_cache"] + cpu["compute_buffers"] + cpu["runtime_overhead"]


def test_a_24gb_gpu_takes_every_layer(model_path) -> None:
    plan = make_plan(model_path, LoadOptions(context=2048), machine("gpu-24gb"), offload=True)
    assert plan.placement == "full GPU" and plan.gpu_layers == -1 and plan.gpu_name == "NVIDIA GeForce RTX 4090"
    gpu = plan.devices()["gpu0"]
    assert gpu["weights"] > 60 * MiB and gpu["kv_cache"] > 0 and gpu["total"] <= plan.vram_budget
    assert plan.devices()["cpu"]["kv_cache"] == 0


def test_a_small_gpu_takes_some_layers(model_path) -> None:
    hw = machine("gpu-8gb")
    def vram(layers: int) -> int:
        return make_plan(model_path, LoadOptions(context=2048, gpu_layers=layers), hw,
                         offload=True).estimate.vram_bytes

    room = (vram(1) + vram(29)) // 2  # the CUDA context alone is most of it for a model this small
    hw.gpus[0] = dataclasses.replace(hw.gpus[0], free_bytes=int(room / 0.9) + 1)
    plan = make_plan(model_path, LoadOptions(context=2048), hw, offload=True)
    assert plan.placement == "partial offload" and 0 < plan.gpu_layers < plan.layers
    assert plan.fits and plan.estimate.vram_bytes <= plan.vram_budget


def test_a_gpu_the_binding_cannot_use_places_nothing_there(model_path) -> None:
    plan = make_plan(model_path, LoadOptions(), machine("gpu-24gb"), offload=False)
    assert plan.gpu_layers == 0 and "gpu0" not in plan.devices()


def test_an_explicit_layer_count_overrides_the_plan(model_path) -> None:
    plan = make_plan(model_path, LoadOptions(gpu_layers=7), machine("gpu-24gb"), offload=True)
    assert plan.gpu_layers == 7 and plan.placement == "partial offload"
    assert make_plan(model_path, LoadOptions(gpu_layers=0), machine("gpu-24gb"), offload=True).gpu_layers == 0


def test_what_does_not_fit_is_refused_with_the_numbers_and_what_would(model_path) -> None:
    big = make_plan(model_path, LoadOptions(context=8192), machine("cpu-16gb"), offload=False)
    small = make_plan(model_path, LoadOptions(context=512), machine("cpu-16gb"), offload=False)
    room = (big.estimate.ram_bytes + small.estimate.ram_bytes) // 2  # 512 fits, 8192 does not
    hw = machine("cpu-16gb", available_bytes=int(room / 0.9), swap_free_bytes=0)
    plan = make_plan(model_path, LoadOptions(context=8192), hw, offload=False)
    assert not plan.fits and plan.placement == "does not fit"
    text = plan.refusal()
    assert f"{plan.estimate.ram_bytes / MiB:,.0f} MiB" in text and "--force" in text
    assert plan.alternatives and plan.alternatives[0].startswith("context ")
    ctx = int(plan.alternatives[0].split()[1])
    assert 512 <= ctx < 8192
    assert make_plan(model_path, LoadOptions(context=ctx), hw, offload=False).fits


def test_extra_buffers_count_the_amx_copy(model_path) -> None:
    """On an AMX CPU the Q4_1 weights get a second, repacked copy: the RSS figure counts it."""
    hw = machine("cpu-16gb")
    hw.cpu = dataclasses.replace(hw.cpu, flags=[*hw.cpu.flags, "amx_tile", "amx_int8"])
    on = make_plan(model_path, LoadOptions(), hw, offload=False, extra_bufts=True).estimate
    off = make_plan(model_path, LoadOptions(), hw, offload=False, extra_bufts=False).estimate
    assert off.reclaimable_cpu == 0
    assert on.rss_bytes - off.rss_bytes > 60 * MiB  # ~ the 95 MiB AMX buffer seen on such a machine


@pytest.fixture
def gpu_host(monkeypatch):
    """A faked NVIDIA host (NVML's view) with a binding built for CUDA."""
    monkeypatch.setattr(hardware, "probe", lambda *a, **k: machine("gpu-24gb"))
    monkeypatch.setattr(binding, "capabilities", lambda *a, **k: binding.BindingCaps(
        version="0.3.36", gpu_offload=True, extra_bufts_ok=True))


def test_plan_for_this_machine_uses_the_binding(gpu_host, model_path, monkeypatch) -> None:
    assert plan_for(model_path, LoadOptions(gpu_layers=AUTO_LAYERS)).gpu_layers == -1
    monkeypatch.setattr(binding, "capabilities", lambda *a, **k: binding.BindingCaps(version="0.3.36"))
    plan = plan_for(model_path, LoadOptions())
    assert plan.gpu_layers == 0 and any("built for the CPU only" in n for n in plan.notes)


def test_a_session_refuses_before_starting_a_worker(monkeypatch, model_path) -> None:
    from localllm.chat import session as session_mod

    monkeypatch.setattr(hardware, "probe", lambda *a, **k: machine(
        "cpu-16gb", available_bytes=50 * MiB, swap_free_bytes=0))
    monkeypatch.setattr(binding, "capabilities", lambda *a, **k: binding.BindingCaps(
        version="0.3.36", extra_bufts_ok=True))
    started = []
    monkeypatch.setattr(session_mod.WorkerClient, "start", lambda self, **k: started.append(self))
    with pytest.raises(PlanRefused) as err:
        session_mod.ChatSession().load(model_path, LoadOptions(context=2048))
    assert "does not fit" in str(err.value) and not started


def test_a_70b_header_is_refused_on_24_gib_with_a_fix_that_fits_and_its_weights_counted_once(shapes) -> None:
    """A sparse 70B Q4_K_M (a real header and tensor table; the data a hole) on a 24 GiB machine with
    AVX2: refused, the fix named would fit, and the weights appear once (mapped + repacked)."""
    from localllm.models.gguf_check import read_layout

    path = shapes("llama-70b")
    hw = machine("cpu-16gb", total_bytes=24 * 2**30, available_bytes=22 * 2**30, swap_free_bytes=0)
    plan = make_plan(path, LoadOptions(context=8192), hw, offload=False, extra_bufts=True)
    cpu = plan.devices()["cpu"]
    weights = read_layout(path).tensor_bytes
    assert not plan.fits and plan.placement == "does not fit"
    assert cpu["weights_mapped"] + cpu["weights_repacked"] == cpu["weights"] == weights  # once
    assert cpu["weights_repacked"] > 0 and cpu["reclaimable_file_pages"] == cpu["weights_repacked"]
    assert cpu["total"] < weights + cpu["weights_repacked"]  # the originals are not in the fit
    assert plan.alternatives and plan.alternatives[0].startswith("the IQ")
    quant = plan.alternatives[0].split()[1]
    from localllm.machine.estimate import estimate_memory
    from localllm.models.catalog import ModelSpec

    bare = dataclasses.replace(ModelSpec.from_gguf(path), gguf_path="")
    assert estimate_memory(bare, "gguf", quant, 8192).ram_bytes <= plan.ram_budget
    text = PlanRefused(plan).args[0]
    assert quant in text and "--force" in text


def test_a_build_without_amx_repacks_nothing_for_amx(model_path) -> None:
    """An AMX Xeon running a llama.cpp built without AMX_INT8 has no AMX buffer type: only the AVX2
    repack counts (the 1B and 8B plans were 19-22% high on such a host for want of this)."""
    hw = machine("cpu-16gb")
    hw.cpu = dataclasses.replace(hw.cpu, flags=[*hw.cpu.flags, "avx2", "amx_tile", "amx_int8"])
    no_amx = {"AVX2": True, "AVX512": True, "AMX_INT8": False, "REPACK": True}
    with_amx = {**no_amx, "AMX_INT8": True}
    plain = make_plan(model_path, LoadOptions(), hw, offload=False, build_features=no_amx).estimate
    amx = make_plan(model_path, LoadOptions(), hw, offload=False, build_features=with_amx).estimate
    assert plain.reclaimable_cpu == 0  # Q4_1 and Q8_0 have no AVX2 repack
    assert amx.reclaimable_cpu > 60 * MiB
    no_repack = make_plan(model_path, LoadOptions(), hw, offload=False,
                          build_features={**with_amx, "REPACK": False}).estimate
    assert no_repack.reclaimable_cpu == amx.reclaimable_cpu  # AMX is its own buffer type


def test_plan_cli_on_a_70b_header_lists_the_weights_once_and_no_rss_it_cannot_reach(shapes, capsys) -> None:
    from localllm.cli.main import main

    assert main(["plan", shapes("llama-70b"), "--hw", "cpu-16gb"]) == 1
    out = capsys.readouterr().out
    assert "placement  does not fit" in out and "does not fit; what would:" in out
    assert out.count("weights, mapped file") == 1 and out.count("weights, repacked copy") <= 1
    assert "reclaimable file pages (not in total)" in out or "repacked" not in out
    assert "rss at" not in out  # a load that cannot happen here has no RSS to show


def test_plan_takes_the_model_as_chat_does_or_plans_the_embedded_one(model_path, capsys) -> None:
    """`plan MODEL`, `plan -m MODEL` and `localllm -m MODEL plan` plan the same file; no model plans the
    embedded one, as a chat without -m loads it; two different models are refused, not one picked."""
    from localllm.cli.main import main

    def planned(argv: list[str]) -> str:
        assert main([*argv, "--hw", "cpu-16gb", "--json"]) == 0
        return json.loads(capsys.readouterr().out)["model"]

    name = Path(model_path).stem
    assert planned(["plan", model_path]) == planned(["plan", "-m", model_path]) == name
    assert planned(["-m", model_path, "plan"]) == planned(["plan"]) == name
    assert main(["plan", "embedded", "-m", "other.gguf", "--hw", "cpu-16gb"]) == 2
    assert "two models given" in capsys.readouterr().err
