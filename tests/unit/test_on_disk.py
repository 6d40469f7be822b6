"""Recommendations use what is on the disk (issue 23): a catalog pick the user already has (in Ollama's
store, LM Studio's folders ...) is marked on_disk with its sources and needs no download; a file that
only looks like it (another quant, another shape, a fine-tune or base model's name) is not; recommend
changes no store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localllm.config import PACKAGE_DATA
from localllm.machine.hardware import HardwareInfo
from localllm.machine.recommend import recommend
from localllm.models import catalog, library, on_disk, stores
from tests.hubserver import tiny_gguf
from tests.unit.test_stores import _cli, _link, _manifest, _sha, checksums, use_stores

SMOL = catalog.get("smollm2-135m")
Q8_0, Q4_0 = 7, 2  # llama.cpp file types


def shaped_gguf(path: Path, spec: catalog.ModelSpec, file_type: int, quant: str, name: str) -> Path:
    """A GGUF with the model's header facts (block_count, embedding_length) and a tensor table of its
    parameter count, the data a hole (sparse: no disk used)."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_uint32("llama.block_count", spec.layers)
    writer.add_uint32("llama.embedding_length", spec.hidden)
    writer.add_uint32("llama.context_length", spec.max_context)
    writer.add_uint32("general.file_type", file_type)
    raw = gguf.GGMLQuantizationType[quant]
    block, size = gguf.GGML_QUANT_SIZES[raw]
    nbytes = spec.params // block * size
    writer.add_tensor_info("w", [spec.params], np.dtype(np.float32), nbytes, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    fout = writer.fout[0]
    start = gguf.GGUFWriter.ggml_pad(fout.tell(), writer.data_alignment)
    fout.truncate(start + gguf.GGUFWriter.ggml_pad(nbytes, writer.data_alignment))
    writer.close()
    return path


def _ollama_model(models: Path, name: str, gguf_file: Path) -> None:
    digest = _sha(gguf_file)
    _link(gguf_file, models / "blobs" / f"sha256-{digest}")
    _manifest(models, name, [{"mediaType": stores.ollama.MODEL_LAYER, "digest": f"sha256:{digest}",
                              "size": gguf_file.stat().st_size}])


@pytest.fixture(scope="module")
def disk(tmp_path_factory, model_path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("on_disk")
    home, made = root / "home", root / "made"
    ollama, lms = home / ".ollama" / "models", home / ".lmstudio" / "models"
    _ollama_model(ollama, "registry.ollama.ai/library/smollm2/135m", Path(model_path))  # the embedded file
    q8 = shaped_gguf(made / "q8.gguf", SMOL, Q8_0, "Q8_0", "SmolLM2 135M Instruct")
    _ollama_model(ollama, "registry.ollama.ai/library/smollm2/135m-instruct-q8_0", q8)
    q4 = shaped_gguf(made / "q4_0.gguf", SMOL, Q4_0, "Q4_0", "SmolLM2 135M Instruct Q4_0")
    _ollama_model(ollama, "registry.ollama.ai/library/smollm2/135m-instruct-q4_0", q4)
    # look-alikes: the base model's tag, a fine-tune's file, the right name with another shape
    base = shaped_gguf(made / "base.gguf", SMOL, Q8_0, "Q8_0", "SmolLM2 135M base")
    _ollama_model(ollama, "registry.ollama.ai/library/smollm2/135m-base-q8_0", base)
    shaped_gguf(lms / "someone" / "Hermes-SmolLM2-135M-GGUF" / "Hermes-SmolLM2-135M-Q8_0.gguf", SMOL, Q8_0,
                "Q8_0", "Hermes SmolLM2 135M")
    q6k = lms / "lmstudio-community" / "SmolLM2-135M-Instruct-GGUF" / "SmolLM2-135M-Instruct-Q6_K.gguf"
    q6k.parent.mkdir(parents=True)
    tiny_gguf(q6k, n_floats=20_000, file_type=18)
    return {"home": home, "ollama": ollama, "lmstudio": lms}


@pytest.fixture
def env(disk, tmp_path, monkeypatch) -> dict[str, Path]:
    use_stores(monkeypatch, tmp_path, disk["home"], disk["ollama"])
    return disk


def _hw() -> HardwareInfo:
    return HardwareInfo.from_dict(json.loads((PACKAGE_DATA / "machines" / "cpu-16gb.json").read_text()))


def test_only_the_files_that_are_the_model_at_that_quant_match(env) -> None:
    found = on_disk.match(catalog.load_catalog(), library.list_models())
    assert set(found) == {("smollm2-135m", "Q4_1"), ("smollm2-135m", "Q8_0"), ("smollm2-135m", "Q4_0")}
    q8 = found["smollm2-135m", "Q8_0"]
    assert [(s.tool, s.name) for s in q8.sources] == [("ollama", "smollm2:135m-instruct-q8_0")]
    assert q8.label == "ollama: smollm2:135m-instruct-q8_0"
    assert [s.tool for s in found["smollm2-135m", "Q4_1"].sources] == ["embedded", "ollama"]
    assert found["smollm2-135m", "Q4_1"].label == "ollama: smollm2:135m"


def test_the_name_test_is_conservative() -> None:
    names = ["smollm2135m", "smollm2135minstructq80", "smollm2135minstructgguf", "smollm2135minstructq80"]
    for name in names:
        assert on_disk._named(SMOL, "Q8_0", [name]), name
    for name in ["smollm2135mbaseq80", "hermessmollm2135mq80", "smollm2135minstructq6k", "smollm21357bq80",
                 "smollm2latest", "smollm2360minstructq80"]:
        assert not on_disk._named(SMOL, "Q8_0", [name]), name
    gemma = catalog.get("gemma-3-1b")
    assert on_disk._named(gemma, "Q4_K_M", ["googlegemma31bitq4km", "gemma31b", "gemma31bitq4km"])
    llama = catalog.get("llama-3.2-3b")
    assert on_disk._named(llama, "Q4_K_M", [on_disk._norm("llama3.2:3b"), on_disk._norm("llama3.2:3b-instruct-q4_K_M")])
    assert not on_disk._named(llama, "Q4_K_M", [on_disk._norm("llama3.2:3b-text-q4_K_M")])


def test_the_shape_test_needs_layers_hidden_and_parameters() -> None:
    facts = stores.Facts("x", "Q8_0", "", "llama", 8192, SMOL.layers, SMOL.hidden, SMOL.params)
    assert on_disk._shaped(SMOL, facts)
    from dataclasses import replace

    assert not on_disk._shaped(SMOL, replace(facts, layers=SMOL.layers + 1))
    assert not on_disk._shaped(SMOL, replace(facts, hidden=1024))
    assert not on_disk._shaped(SMOL, replace(facts, params=int(SMOL.params * 1.2)))
    assert not on_disk._shaped(SMOL, replace(facts, layers=0, hidden=0, params=0))  # not read: no match


def test_a_pick_on_the_disk_says_where_and_needs_no_download(env) -> None:
    found = on_disk.find_on_disk(catalog.load_catalog())
    rec = recommend(_hw(), catalog.load_catalog(), on_disk=found)
    smol = {p.quant: p for p in rec.picks + rec.rejected if p.model == "smollm2-135m" and p.format == "gguf"}
    q8 = smol["Q8_0"]
    assert q8.on_disk and q8.download_bytes == 0
    assert "on disk (ollama: smollm2:135m-instruct-q8_0), no download" in q8.why
    assert [s["name"] for s in q8.sources] == ["smollm2:135m-instruct-q8_0"]
    assert not smol["Q6_K"].on_disk and smol["Q6_K"].download_bytes > 0 and "on disk" not in smol["Q6_K"].why
    assert smol["Q4_0"].on_disk and smol["Q4_0"].source == "ollama:smollm2:135m-instruct-q4_0"  # not in the catalog
    assert q8.ref == "ollama:smollm2:135m-instruct-q8_0" and smol["Q4_1"].ref == "embedded"
    assert smol["Q4_1"].on_disk and "on disk (ollama: smollm2:135m)" in smol["Q4_1"].why
    shown = rec.top(50)
    assert q8 in shown and smol["Q4_0"] in shown  # shown beyond the two quants per model
    below = rec.on_disk_below(3)  # the best three, then what is on the disk further down
    assert below and all(p.on_disk and p not in rec.top(3) for p in below) and q8 in below
    assert [p["quant"] for p in rec.to_dict(3)["picks"][3:]] == [p.quant for p in below]
    assert all(p.max_context for p in below)
    data = rec.to_dict(50)
    q8_json = next(p for p in data["picks"] if p["model"] == "smollm2-135m" and p["quant"] == "Q8_0")
    assert q8_json["on_disk"] is True and q8_json["sources"][0]["tool"] == "ollama"
    from localllm.ui.screens.hardware_screen import download_target

    assert download_target(q8) is None and download_target(smol["Q6_K"]) == (
        "bartowski/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct-Q6_K.gguf")  # the Machine screen: no pull
    plain = recommend(_hw(), catalog.load_catalog())
    assert not any(p.on_disk for p in plain.picks)


def test_recommend_cli_marks_on_disk_and_changes_no_store(env) -> None:
    before = checksums(env["ollama"], env["lmstudio"])
    vars_ = {"HOME": str(env["home"]), "OLLAMA_MODELS": str(env["ollama"]), "LOCALLLM_STORES": "ollama,lmstudio"}
    out = _cli("recommend", "--json", "-n", "60", "--format", "gguf", env_vars=vars_)
    assert out.returncode == 0, out.stderr
    picks = json.loads(out.stdout)["picks"]
    q8 = next(p for p in picks if p["model"] == "smollm2-135m" and p["quant"] == "Q8_0")
    assert q8["on_disk"] is True and q8["download_bytes"] == 0
    assert q8["sources"] == [{"tool": "ollama", "name": "smollm2:135m-instruct-q8_0",
                              "path": q8["sources"][0]["path"], "digest": q8["sources"][0]["digest"]}]
    assert not next(p for p in picks if p["quant"] == "Q6_K" and p["model"] == "smollm2-135m")["on_disk"]
    text = _cli("recommend", "-n", "60", "--format", "gguf", env_vars=vars_)
    assert "on disk (ollama: smollm2:135m-instruct-q8_0), no download" in text.stdout
    assert "have: ollama:smollm2:135m-instruct-q8_0 (`localllm chat -m ollama:smollm2:135m-instruct-q8_0`)" in text.stdout
    short = _cli("recommend", "-n", "2", "--format", "gguf", env_vars=vars_).stdout
    assert "-- already on this disk, further down the ranking --" in short
    assert "on disk (ollama: smollm2:135m-instruct-q8_0), no download" in short
    off = json.loads(_cli("recommend", "--json", "-n", "60", "--no-disk", env_vars=vars_).stdout)
    assert not any(p["on_disk"] for p in off["picks"])
    assert checksums(env["ollama"], env["lmstudio"]) == before
