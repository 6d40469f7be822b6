"""More stores (issue 23): llama.cpp's old cache ($LLAMA_CACHE or ~/.cache/llama.cpp), GPT4All's download
folder (and the modelPath its settings name) and Jan's model folders (the newer data folder and the
older ~/jan/models), each built with its layout under a temporary HOME, listed read-only with its tool's
name, deduplicated against the other stores, and never changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localllm.models import library, stores
from localllm.models.stores import apps
from tests.hubserver import tiny_gguf
from tests.unit.test_stores import _link, checksums


@pytest.fixture
def home(tmp_path, monkeypatch, model_path) -> Path:
    home = tmp_path / "home"
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "LLAMA_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LOCALLLM_STORES", "llamacpp,gpt4all,jan")
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "localllm"))
    (tmp_path / "localllm").mkdir()
    # llama.cpp: flat <owner>_<repo>_<file>.gguf beside its etag .json, and a download in progress
    cache = home / ".cache" / "llama.cpp"
    _link(Path(model_path), cache / "bartowski_SmolLM2-135M-Instruct-GGUF_SmolLM2-135M-Instruct-Q4_1.gguf")
    (cache / "bartowski_SmolLM2-135M-Instruct-GGUF_SmolLM2-135M-Instruct-Q4_1.gguf.json").write_text('{"etag": "x"}')
    (cache / "other_Repo_file-Q8_0.gguf.downloadInProgress").write_bytes(b"GGUF partial")
    # GPT4All: flat in its download path; an unfinished download
    g4a = home / ".local" / "share" / "nomic.ai" / "GPT4All"
    g4a.mkdir(parents=True)
    tiny_gguf(g4a / "Llama-3.2-1B-Instruct-Q4_0.gguf", n_floats=20_000, file_type=2)
    tiny_gguf(g4a / "incomplete-Llama-3.2-3B-Instruct-Q4_0.gguf", n_floats=1_000, file_type=2)
    (g4a / "localdocs_v3.db").write_bytes(b"SQLite format 3\0")
    # Jan: the data folder's llamacpp/models/<id>/model.gguf + model.yml; the older ~/jan/models/<id>/
    jan_new = home / ".local" / "share" / "Jan" / "data" / "llamacpp" / "models" / "Qwen3-0.6B-Q8_0"
    jan_new.mkdir(parents=True)
    tiny_gguf(jan_new / "model.gguf", n_floats=30_000, file_type=7)
    (jan_new / "model.yml").write_text("model_path: llamacpp/models/Qwen3-0.6B-Q8_0/model.gguf\nname: Qwen3-0.6B-Q8_0\n")
    jan_old = home / "jan" / "models" / "trinity-v1-7b"
    jan_old.mkdir(parents=True)
    tiny_gguf(jan_old / "trinity-v1.Q4_K_M.gguf", n_floats=40_000)
    (jan_old / "model.json").write_text('{"id": "trinity-v1-7b", "format": "gguf"}')
    return home


def test_llamacpp_gpt4all_and_jan_are_listed_with_their_tools_names(home, model_path) -> None:
    before = checksums(home)
    entries = library.list_models()
    by_source = {(s.tool, s.name): (e, s) for e in entries for s in e.sources}
    smol, src = by_source["llamacpp", "bartowski_SmolLM2-135M-Instruct-GGUF_SmolLM2-135M-Instruct-Q4_1.gguf"]
    assert smol.id == "embedded"  # the same file as the embedded model: one entry, two sources
    assert src.ref == src.path and src.path.startswith(str(home / ".cache" / "llama.cpp"))
    g4a, _ = by_source["gpt4all", "Llama-3.2-1B-Instruct-Q4_0.gguf"]
    assert (g4a.source, g4a.quant, g4a.status, g4a.read_only) == ("gpt4all", "Q4_0", "ok", True)
    jan_new, _ = by_source["jan", "Qwen3-0.6B-Q8_0/model.gguf"]
    assert (jan_new.quant, jan_new.status) == ("Q8_0", "ok")
    jan_old, _ = by_source["jan", "trinity-v1-7b/trinity-v1.Q4_K_M.gguf"]
    assert jan_old.quant == "Q4_K_M"
    names = {s.name for e in entries for s in e.sources}
    assert not any("incomplete-" in n or "downloadInProgress" in n for n in names)
    with pytest.raises(library.LibraryError, match="only reads; remove it with GPT4All"):
        library.remove(g4a.id, delete_file=True)
    assert checksums(home) == before


def test_where_each_tool_looks(home, monkeypatch, tmp_path) -> None:
    assert apps.llamacpp_roots() == [home / ".cache" / "llama.cpp"]
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "llama-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    assert apps.llamacpp_roots() == [tmp_path / "llama-cache", tmp_path / "xdg-cache" / "llama.cpp"]
    assert apps.gpt4all_roots()[0] == home / ".local" / "share" / "nomic.ai" / "GPT4All"
    assert apps.gpt4all_roots()[-1] == home / ".cache" / "gpt4all"  # the Python bindings' downloads
    ini = home / ".config" / "nomic.ai" / "GPT4All.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(f"[General]\nmodelPath={tmp_path / 'g4a-models'}\nthreadCount=4\n")
    assert tmp_path / "g4a-models" in apps.gpt4all_roots()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert apps.gpt4all_roots()[0] == tmp_path / "data" / "nomic.ai" / "GPT4All"
    assert apps.jan_roots()[:2] == [tmp_path / "data" / "Jan" / "data" / "llamacpp" / "models",
                                    home / ".config" / "Jan" / "data" / "llamacpp" / "models"]
    assert apps.jan_roots()[-1] == home / "jan" / "models"


def test_the_configured_gpt4all_folder_is_read(home, tmp_path) -> None:
    elsewhere = tmp_path / "g4a-models"
    elsewhere.mkdir()
    tiny_gguf(elsewhere / "Phi-3-mini-4k-instruct.Q4_0.gguf", n_floats=5_000, file_type=2)
    ini = home / ".config" / "nomic.ai" / "GPT4All.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(f"[General]\nmodelPath={elsewhere}\n")
    found = {f.source.name for f in stores.scan(("gpt4all",)).found}
    assert found == {"Llama-3.2-1B-Instruct-Q4_0.gguf", "Phi-3-mini-4k-instruct.Q4_0.gguf"}


def test_an_unreadable_jan_folder_is_a_note_and_the_others_are_listed(home, monkeypatch) -> None:
    models = home / ".local" / "share" / "Jan" / "data" / "llamacpp" / "models"
    real = os.scandir

    def scandir(path):
        if Path(path) == models:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = stores.scan()
    assert scan.notes == [f"jan: skipped {models}: Permission denied"]
    assert {f.source.tool for f in scan.found} == {"llamacpp", "gpt4all", "jan"}  # ~/jan/models still read
