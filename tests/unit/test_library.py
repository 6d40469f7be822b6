"""The model library over a real HF cache filled from the loopback Hub, plus files added by path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from localllm.errors import ModelFileError
from localllm.hub.download import DownloadJob
from localllm.hub.repos import list_repo, select_files
from localllm.models import library
from tests.hubserver import checkpoint_files, gguf_data, hub_config, hub_server, tiny_gguf  # noqa: F401


@pytest.fixture
def cache(hub_server, gguf_data, tmp_path, monkeypatch):  # noqa: F811
    """An HF cache holding two quants of one repo, a split GGUF, a header-only quant, a GPTQ and an
    fp16 checkpoint; LOCALLLM_HOME private to the test."""
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "home"))
    q8 = tiny_gguf(tmp_path / "q8.gguf", n_floats=200_000, file_type=7)
    parts = [tiny_gguf(tmp_path / f"p{i}.gguf", n_floats=50_000, name=f"part{i}") for i in (1, 2)]
    hub_server.add_repo("acme/Tiny-GGUF", {"tiny-Q4_K_M.gguf": gguf_data, "tiny-Q8_0.gguf": q8})
    hub_server.add_repo("acme/split-GGUF", {"s-Q4_K_M-00001-of-00002.gguf": parts[0],
                                            "s-Q4_K_M-00002-of-00002.gguf": parts[1]})
    hub_server.add_repo("acme/oddname", {"weights.gguf": gguf_data})
    hub_server.add_repo("acme/tiny-gptq", checkpoint_files(gptq=True))
    hub_server.add_repo("acme/tiny-ckpt", checkpoint_files())
    cfg = hub_config(hub_server, tmp_path / "hub")
    for repo, quant in [("acme/Tiny-GGUF", "Q4_K_M"), ("acme/Tiny-GGUF", "Q8_0"), ("acme/split-GGUF", None),
                        ("acme/oddname", None), ("acme/tiny-gptq", None), ("acme/tiny-ckpt", None)]:
        listing = list_repo(repo, cfg=cfg)
        DownloadJob(listing, select_files(listing, quant=quant), cfg).run()
    return cfg.cache_dir


def by_id(cache_dir) -> dict[str, library.LibraryEntry]:
    return {e.id: e for e in library.list_models(cache_dir)}


def test_library_lists_embedded_cached_models_with_format_quant_and_size(cache, gguf_data) -> None:  # noqa: F811
    entries = library.list_models(cache)
    assert entries[0].id == "embedded" and entries[0].quant == "Q4_1" and entries[0].size_bytes > 90e6
    table = {e.id: (e.format, e.quant, e.source, e.status) for e in entries}
    assert table == {
        "embedded": ("gguf", "Q4_1", "embedded", "ok"),
        "acme/Tiny-GGUF:tiny-Q4_K_M.gguf": ("gguf", "Q4_K_M", "hf-cache", "ok"),
        "acme/Tiny-GGUF:tiny-Q8_0.gguf": ("gguf", "Q8_0", "hf-cache", "ok"),
        "acme/oddname:weights.gguf": ("gguf", "Q4_K_M", "hf-cache", "ok"),  # from the GGUF header
        "acme/split-GGUF:s-Q4_K_M.gguf": ("gguf", "Q4_K_M", "hf-cache", "ok"),
        "acme/tiny-ckpt": ("safetensors", "F16", "hf-cache", "ok"),
        "acme/tiny-gptq": ("gptq", "gptq-4bit-g128", "hf-cache", "ok"),
    }
    ent = by_id(cache)
    assert ent["acme/Tiny-GGUF:tiny-Q4_K_M.gguf"].size_bytes == len(gguf_data)
    split = ent["acme/split-GGUF:s-Q4_K_M.gguf"]
    assert split.path.endswith("s-Q4_K_M-00001-of-00002.gguf") and "/snapshots/" in split.path
    assert split.size_bytes == sum(p.stat().st_size for p in Path(split.path).parent.iterdir())
    ckpt = ent["acme/tiny-gptq"]
    assert Path(ckpt.path, "config.json").exists() and ckpt.repo_id == "acme/tiny-gptq" and len(ckpt.revision) == 40
    assert json.loads(json.dumps(ckpt.to_dict()))["usable"] is True


def test_half_there_models_are_listed_but_never_offered(cache) -> None:
    ent = by_id(cache)
    Path(ent["acme/split-GGUF:s-Q4_K_M.gguf"].path).with_name("s-Q4_K_M-00002-of-00002.gguf").unlink()
    Path(ent["acme/tiny-ckpt"].path, "model-00002-of-00002.safetensors").unlink()
    blob = Path(os.path.realpath(ent["acme/oddname:weights.gguf"].path))
    blob.write_bytes(blob.read_bytes()[:5000])  # damaged by something else
    ent = by_id(cache)
    split, ckpt, odd = ent["acme/split-GGUF:s-Q4_K_M.gguf"], ent["acme/tiny-ckpt"], ent["acme/oddname:weights.gguf"]
    assert (split.status, split.detail, split.usable) == ("incomplete", "1 of 2 parts present", False)
    assert ckpt.status == "incomplete" and "model-00002-of-00002.safetensors" in ckpt.detail
    assert odd.status == "damaged" and "truncated" in odd.detail
    partial = cache / "models--acme--Tiny-GGUF" / "blobs" / ("0" * 64 + ".incomplete")
    partial.write_bytes(b"x" * 1000)
    left = dict(library.partial_downloads(cache))  # the unlinked blobs count as leftovers too
    assert left == {"acme/Tiny-GGUF": 1000, "acme/split-GGUF": 200224, "acme/tiny-ckpt": 16464}
    assert not any(e.id.endswith("0" * 8) for e in library.list_models(cache))  # never an entry


def test_add_by_path_validates_remembers_and_forgets_without_deleting(cache, tmp_path) -> None:
    model = tmp_path / "mine" / "my-model.gguf"
    model.parent.mkdir()
    tiny_gguf(model, n_floats=1000, file_type=2)
    entry, added = library.add_path(model)
    assert added and (entry.id, entry.source, entry.quant) == (str(model), "path", "Q4_0")
    assert json.loads((tmp_path / "home" / "library.json").read_text())["paths"] == [str(model)]
    assert library.add_path(model) == (entry, False)
    assert library.add_path(by_id(cache)["embedded"].path)[1] is False  # already there as "embedded"
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("not a model")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        library.add_path(bogus)
    assert by_id(cache)[str(model)].usable
    removed = library.remove(str(model), cache_dir=cache)
    assert removed.action == "forgotten" and removed.freed_bytes == 0 and model.exists()
    assert str(model) not in by_id(cache)
    library.add_path(model)
    assert library.remove(str(model), delete_file=True, cache_dir=cache).freed_bytes > 0 and not model.exists()
    tiny_gguf(model, n_floats=1000)
    library.add_path(model)
    model.unlink()
    assert by_id(cache)[str(model)].status == "missing"


def test_the_embedded_model_cannot_be_deleted(cache) -> None:
    with pytest.raises(library.LibraryError, match="embedded model ships inside localllm"):
        library.remove("embedded", cache_dir=cache)
    with pytest.raises(library.LibraryError, match="No model 'nope'"):
        library.remove("nope", cache_dir=cache)


def test_delete_one_quant_then_the_repo_frees_the_space(cache, gguf_data) -> None:  # noqa: F811
    from huggingface_hub import hf_hub_download, scan_cache_dir

    ent = by_id(cache)
    q8 = ent["acme/Tiny-GGUF:tiny-Q8_0.gguf"]
    q8_blob = Path(os.path.realpath(q8.path))
    removed = library.remove(q8.id, cache_dir=cache)
    assert removed.freed_bytes == q8.size_bytes and not q8_blob.exists()
    assert Path(hf_hub_download("acme/Tiny-GGUF", "tiny-Q4_K_M.gguf", cache_dir=cache,
                                local_files_only=True)).read_bytes() == gguf_data  # the other quant stays
    assert not scan_cache_dir(cache).warnings
    removed = library.remove("acme/Tiny-GGUF:tiny-Q4_K_M.gguf", cache_dir=cache)
    assert removed.freed_bytes == len(gguf_data) and not (cache / "models--acme--Tiny-GGUF").exists()
    before = sum(r.size_on_disk for r in scan_cache_dir(cache).repos)
    ckpt = by_id(cache)["acme/tiny-gptq"]
    assert library.remove("acme/tiny-gptq", cache_dir=cache).freed_bytes == ckpt.size_bytes
    assert sum(r.size_on_disk for r in scan_cache_dir(cache).repos) == before - ckpt.size_bytes
    assert {e.id for e in library.list_models(cache)} == {
        "embedded", "acme/oddname:weights.gguf", "acme/split-GGUF:s-Q4_K_M.gguf", "acme/tiny-ckpt"}


def test_cli_models_list_json_add_rm(cache, tmp_path, monkeypatch, capsys) -> None:
    from localllm.cli.main import main

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "FORMAT", "QUANT", "SIZE", "SOURCE"]
    assert out[1].split() == ["embedded", "gguf", "Q4_1", "98.4", "MB", "embedded"]
    assert "acme/Tiny-GGUF:tiny-Q4_K_M.gguf  gguf" in "\n".join(out)
    model = tmp_path / "x-Q4_0.gguf"
    tiny_gguf(model, n_floats=1000, file_type=2)
    assert main(["models", "add", str(model)]) == 0
    assert capsys.readouterr().out.startswith(f"Added {model} (gguf Q4_0,")
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[-1]["id"] == str(model) and listed[-1]["source"] == "path" and listed[-1]["usable"]
    assert main(["models", "rm", str(model)]) == 0
    assert "the file is still on disk" in capsys.readouterr().out and model.exists()
    assert main(["models", "rm", "acme/tiny-ckpt"]) == 0
    assert capsys.readouterr().out.startswith("Deleted acme/tiny-ckpt, freed 33.")
    assert main(["models", "rm", "embedded"]) == 1
    assert "cannot be deleted" in capsys.readouterr().err
