"""Models other tools keep (issue 23): Ollama's store and LM Studio's folders built with their real
layouts under a temporary HOME from the embedded GGUF, listed, deduplicated, named as broken, run
through `-m ollama:NAME`, and never changed (checksums before and after)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localllm.hub.repos import human_size
from localllm.models import library, stores
from localllm.models.ref import ModelRef
from localllm.models.stores import StoreError
from tests.hubserver import tiny_gguf

REPO = Path(__file__).resolve().parents[2]


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _link(src: Path, dst: Path) -> None:
    """A hard link (no copy of 98 MB); a symlink across file systems."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        os.symlink(src, dst)


def _blob(models: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    path = models / "blobs" / f"sha256-{digest}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _manifest(models: Path, name: str, layers: list[dict]) -> Path:
    host, ns, model, tag = name.split("/")
    path = models / "manifests" / host / ns / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"mediaType": "application/vnd.docker.container.image.v1+json",
              "digest": "sha256:" + "0" * 64, "size": 2}
    path.write_text(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                "config": config, "layers": layers}))
    return path


def build_stores(root: Path, model: Path, model_sha: str) -> dict[str, Path]:
    """HOME with ~/.ollama/models and ~/.lmstudio/models as the tools write them, and a user folder."""
    home = root / "home"
    ollama = home / ".ollama" / "models"
    _link(model, ollama / "blobs" / f"sha256-{model_sha}")
    size = model.stat().st_size
    model_layer = {"mediaType": stores.ollama.MODEL_LAYER, "digest": f"sha256:{model_sha}", "size": size}
    params = {"mediaType": stores.ollama.PARAMS_LAYER, **_blob(ollama, b'{"stop":["<|im_end|>"],"temperature":0.2}')}
    template = {"mediaType": "application/vnd.ollama.image.template", **_blob(ollama, b"{{ .Prompt }}")}
    _manifest(ollama, "registry.ollama.ai/library/smollm2/135m", [model_layer, template, params])
    projector = {"mediaType": stores.ollama.PROJECTOR_LAYER, **_blob(ollama, b"GGUF projector stand-in")}
    _manifest(ollama, "hf.co/bartowski/SmolLM2-GGUF/Q4_1", [model_layer, projector])  # the same blob
    (ollama / "manifests/registry.ollama.ai/library/broken").mkdir(parents=True)
    (ollama / "manifests/registry.ollama.ai/library/broken/latest").write_text('{"layers": [')
    _manifest(ollama, "registry.ollama.ai/library/gone/latest",
              [{"mediaType": stores.ollama.MODEL_LAYER, "digest": "sha256:" + "ab" * 32, "size": 10}])
    adapter = {"mediaType": "application/vnd.ollama.image.adapter", **_blob(ollama, b"lora")}
    _manifest(ollama, "registry.ollama.ai/library/smol-lora/latest", [model_layer, adapter])
    _manifest(ollama, "registry.ollama.ai/library/mlx-model/latest",
              [{"mediaType": stores.ollama.TENSOR_LAYER, **_blob(ollama, b"tensor"), "name": "w"}])

    lms = home / ".lmstudio" / "models"
    copy = lms / "lmstudio-community" / "SmolLM2-135M-Instruct-GGUF" / "SmolLM2-135M-Instruct-Q4_1.gguf"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(model, copy)  # a real second copy: the space --dupes reports
    (copy.parent / "mmproj-SmolLM2-f16.gguf").write_bytes(b"GGUF projector stand-in")
    split = lms / "acme" / "Split-GGUF"
    split.mkdir(parents=True)
    for i in (1, 2):
        tiny_gguf(split / f"split-Q4_K_M-0000{i}-of-00002.gguf", n_floats=20_000, name=f"part{i}")
    tiny_gguf(split / "half-Q8_0-00001-of-00003.gguf", n_floats=20_000, file_type=7)
    tiny_gguf(split / "other-Q8_0.gguf", n_floats=10_000, file_type=7)
    (lms / "acme" / "locked").mkdir()
    tiny_gguf(lms / "acme" / "locked" / "hidden.gguf", n_floats=1000)

    mine = root / "mine" / "sub"
    mine.mkdir(parents=True)
    tiny_gguf(mine / "own-Q8_0.gguf", n_floats=30_000, file_type=7)
    return {"home": home, "ollama": ollama, "lmstudio": lms, "folder": root / "mine"}


@pytest.fixture(scope="module")
def store_tree(tmp_path_factory, model_path):
    root = tmp_path_factory.mktemp("stores")
    return build_stores(root, Path(model_path), _sha(Path(model_path)))


@pytest.fixture
def env(store_tree, tmp_path, monkeypatch):
    """HOME at the built stores, localllm's own home private to the test, the user folder in its settings."""
    monkeypatch.setenv("HOME", str(store_tree["home"]))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "LLAMA_CACHE"):  # none of the developer's
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("LOCALLLM_STORES", raising=False)  # conftest turns the stores off
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "localllm"))
    monkeypatch.setattr(stores.ollama, "ollama_roots", lambda: [store_tree["home"] / ".ollama" / "models"])
    (tmp_path / "localllm").mkdir()
    (tmp_path / "localllm" / "settings.toml").write_text(f"model_folders = [{json.dumps(str(store_tree['folder']))}]\n")
    return store_tree


def use_stores(monkeypatch, tmp_path: Path, home: Path, ollama: Path) -> None:
    """HOME at a built store tree with Ollama's and LM Studio's stores on (conftest turns them off),
    localllm's own home private to the test."""
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama))
    monkeypatch.setenv("LOCALLLM_STORES", "ollama,lmstudio")
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "localllm"))
    monkeypatch.setattr(stores.ollama, "ollama_roots", lambda: [ollama])
    (tmp_path / "localllm").mkdir()


def checksums(*roots: Path) -> dict[str, str]:
    """Every file's sha256 and every folder's listing, symlinks as their targets."""
    out = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            out[f"dir:{folder}"] = ",".join(sorted(dirs + files))
            for name in files:
                path = Path(folder) / name
                out[str(path)] = f"-> {os.readlink(path)}" if path.is_symlink() else _sha(path)
    return out


def _by_ref(entries) -> dict[str, library.LibraryEntry]:
    return {s.ref: e for e in entries for s in e.sources}


def test_every_store_is_listed_deduplicated_and_broken_ones_named(env) -> None:
    notes: list[str] = []
    entries = library.list_models(notes=notes)
    refs = _by_ref(entries)
    # the embedded file, its Ollama blob (a hard link) under two names and LM Studio's copy: one entry
    smol = refs["ollama:smollm2:135m"]
    assert smol is refs["embedded"] is refs["ollama:hf.co/bartowski/SmolLM2-GGUF:Q4_1"]
    lms_ref = "lmstudio:lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf"
    assert refs[lms_ref] is smol
    assert [s.tool for s in smol.sources] == ["embedded", "ollama", "ollama", "lmstudio"]
    assert (smol.quant, smol.arch, smol.context) == ("Q4_1", "llama", 8192)
    ollama = next(s for s in smol.sources if s.name == "smollm2:135m")
    assert json.loads(ollama.params) == {"stop": ["<|im_end|>"], "temperature": 0.2}
    assert ollama.digest.startswith("sha256:") and ollama.path.endswith(ollama.digest[7:])
    hf = next(s for s in smol.sources if s.name.startswith("hf.co/"))
    assert hf.projector.endswith(".ollama/models/blobs/sha256-" + hashlib.sha256(b"GGUF projector stand-in").hexdigest())
    assert refs[lms_ref].sources[-1].projector.endswith("mmproj-SmolLM2-f16.gguf")
    assert len([e for e in entries if e is smol]) == 1

    by_id = {e.id: e for e in entries}
    assert (by_id["ollama:broken:latest"].status, by_id["ollama:gone:latest"].status) == ("broken", "broken")
    assert "not valid JSON" in by_id["ollama:broken:latest"].detail
    assert "dangling blob" in by_id["ollama:gone:latest"].detail
    assert by_id["ollama:mlx-model:latest"].status == "unsupported"
    assert "LoRA adapter" in by_id["ollama:smol-lora:latest"].detail
    split = by_id["lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf"]
    assert (split.status, split.quant, split.path.endswith("-00001-of-00002.gguf")) == ("ok", "Q4_K_M", True)
    assert split.size_bytes == sum(p.stat().st_size for p in Path(split.path).parent.glob("split-*"))
    assert by_id["lmstudio:acme/Split-GGUF/half-Q8_0.gguf"].status == "incomplete"
    own = next(e for e in entries if e.source == "folder")
    assert (own.quant, own.status, own.id.endswith("sub/own-Q8_0.gguf")) == ("Q8_0", "ok", True)
    assert not notes


def test_an_unreadable_folder_is_a_note_and_hides_nothing_else(env, monkeypatch) -> None:
    locked = env["lmstudio"] / "acme" / "locked"
    real = os.scandir

    def scandir(path):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    notes: list[str] = []
    refs = _by_ref(library.list_models(notes=notes))
    assert notes == [f"lmstudio: skipped {locked}: Permission denied"]
    assert "ollama:smollm2:135m" in refs and "lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf" in refs
    assert not any("hidden" in r for r in refs)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder anyway")
def test_a_chmod_000_store_folder_is_skipped_with_a_note(env) -> None:
    ollama_ns = env["ollama"] / "manifests" / "hf.co"
    os.chmod(ollama_ns, 0)
    try:
        notes: list[str] = []
        refs = _by_ref(library.list_models(notes=notes))
    finally:
        os.chmod(ollama_ns, 0o755)
    assert any(str(ollama_ns) in n for n in notes)
    assert "ollama:smollm2:135m" in refs and "ollama:hf.co/bartowski/SmolLM2-GGUF:Q4_1" not in refs


def test_refs_resolve_in_place_and_a_wrong_name_says_what_exists(env, model_path) -> None:
    blob = ModelRef.parse("ollama:smollm2:135m").path
    assert Path(blob).parent == env["ollama"] / "blobs" and os.path.samefile(blob, model_path)
    assert ModelRef.parse("ollama:registry.ollama.ai/library/smollm2:135m").path == blob
    assert ModelRef.parse("ollama:hf.co/bartowski/SmolLM2-GGUF:Q4_1").path == blob
    assert ModelRef.parse("ollama:smollm2:135m").name == "smollm2:135m"
    lms = ModelRef.parse("lmstudio:lmstudio-community/SmolLM2-135M-Instruct-GGUF")
    assert lms.backend == "llama_cpp" and lms.path.endswith("SmolLM2-135M-Instruct-Q4_1.gguf")
    assert ModelRef.parse("lmstudio:acme/Split-GGUF/split-Q4_K_M").path.endswith("-00001-of-00002.gguf")
    with pytest.raises(StoreError, match=r"No Ollama model 'smollm2'\. It has: .*ollama:smollm2:135m"):
        stores.resolve("ollama:smollm2")  # :latest is not there
    with pytest.raises(StoreError, match="dangling blob"):
        stores.resolve("ollama:gone")
    with pytest.raises(StoreError, match="names 2 models; say which: lmstudio:acme/Split-GGUF/other-Q8_0.gguf, "
                                         "lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf"):
        stores.resolve("lmstudio:acme/Split-GGUF")
    with pytest.raises(StoreError, match="half-Q8_0: 1 of 3 parts present"):
        stores.resolve("lmstudio:acme/Split-GGUF/half-Q8_0")
    with pytest.raises(StoreError, match="No LM Studio model 'nobody/nothing'"):
        stores.resolve("lmstudio:nobody/nothing")


def test_ollama_names_parse_as_ollama_does() -> None:
    assert stores.ollama.parse_ollama_name("smollm2") == ("registry.ollama.ai", "library", "smollm2", "latest")
    assert stores.ollama.parse_ollama_name("smollm2:135m") == ("registry.ollama.ai", "library", "smollm2", "135m")
    assert stores.ollama.parse_ollama_name("me/m:q4") == ("registry.ollama.ai", "me", "m", "q4")
    assert stores.ollama.parse_ollama_name("localhost:5000/me/m") == ("localhost:5000", "me", "m", "latest")
    assert stores.ollama.ollama_display("registry.ollama.ai", "library", "m", "t") == "m:t"
    assert stores.ollama.ollama_display("registry.ollama.ai", "me", "m", "t") == "me/m:t"


def test_ollama_models_env_and_the_linux_service_path(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "elsewhere"))
    roots = stores.ollama.ollama_roots()
    assert roots[0] == tmp_path / "elsewhere"
    if sys.platform.startswith("linux"):
        assert roots[1] == Path("/usr/share/ollama/.ollama/models")
    monkeypatch.delenv("OLLAMA_MODELS")
    assert stores.ollama.ollama_roots()[0] == tmp_path / ".ollama" / "models"
    (tmp_path / ".lmstudio").mkdir()
    (tmp_path / ".lmstudio" / "settings.json").write_text(json.dumps({"downloadsFolder": str(tmp_path / "dl")}))
    assert stores.folders.lmstudio_roots() == [tmp_path / ".lmstudio" / "models", tmp_path / ".cache" / "lm-studio" / "models",
                                       tmp_path / "dl"]


def test_store_entries_are_read_only(env) -> None:
    with pytest.raises(library.LibraryError, match="only reads; remove it with `ollama rm`"):
        library.remove("ollama:smollm2:135m", delete_file=True)
    with pytest.raises(library.LibraryError, match="only reads"):
        library.remove("lmstudio:acme/Split-GGUF/split-Q4_K_M.gguf", delete_file=True)


def test_identity_facts_are_cached_in_localllms_home(env, monkeypatch) -> None:
    monkeypatch.setattr(stores.identity, "_memo", {})  # as in a new process
    monkeypatch.setattr(stores.identity, "_loaded", False)
    library.list_models()
    saved = json.loads((Path(os.environ["LOCALLLM_HOME"]) / stores.FACTS_FILE).read_text())["files"]
    assert len(saved) >= 5
    monkeypatch.setattr(stores.identity, "_memo", {})
    monkeypatch.setattr(stores.identity, "_loaded", False)
    monkeypatch.setattr(stores.identity, "_compute", lambda *a: pytest.fail("a warm listing reads no header"))
    assert library.list_models()


def _cli(*args: str, env_vars: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_vars or {}), "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "localllm", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


def _no_service_store(env) -> dict:
    """The CLI in a child: HOME at the stores, OLLAMA_MODELS there too (so the Linux service's store,
    if this host has one, is the only other place it looks)."""
    return {"HOME": str(env["home"]), "OLLAMA_MODELS": str(env["ollama"])}


def test_models_cli_lists_reports_dupes_and_changes_no_store(env) -> None:
    before = checksums(env["ollama"], env["lmstudio"], env["folder"])
    vars_ = _no_service_store(env)
    table = _cli("models", env_vars=vars_)
    assert table.returncode == 0, table.stderr
    assert "ollama:broken:latest" in table.stdout and "[broken: " in table.stdout
    assert "embedded + ollama hf.co/bartowski/SmolLM2-GGUF:Q4_1 + ollama smollm2:135m + lmstudio" in table.stdout
    assert "lmstudio:acme/Split-GGUF/half-Q8_0.gguf" in table.stdout and "[incomplete: 1 of 3 parts" in table.stdout
    listed = json.loads(_cli("models", "--json", env_vars=vars_).stdout)
    smol = next(e for e in listed if e["id"] == "embedded")
    assert {k: smol[k] for k in ("name", "quant", "arch", "context")} == {
        "name": "SmolLM2-135M-Instruct (embedded)", "quant": "Q4_1", "arch": "llama", "context": 8192}
    assert smol["size"] == Path(smol["path"]).stat().st_size
    sources = {(s["tool"], s["name"]): s for s in smol["sources"]}
    assert {("embedded", "embedded"), ("ollama", "smollm2:135m"), ("ollama", "hf.co/bartowski/SmolLM2-GGUF:Q4_1"),
            ("lmstudio", "lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf")} == set(sources)
    assert sources["ollama", "smollm2:135m"]["params"]["temperature"] == 0.2
    dupes = _cli("models", "--dupes", env_vars=vars_)
    size = human_size(smol["size"])
    assert f"embedded ({size}): 2 copies on disk, {size} in extra copies" in dupes.stdout
    plan = _cli("plan", "ollama:smollm2:135m", "--hw", "cpu-16gb", env_vars=vars_)
    assert plan.returncode == 0, plan.stderr
    wrong = _cli("chat", "-m", "ollama:nope", "-p", "hi", env_vars=vars_)
    assert wrong.returncode == 1 and "No Ollama model 'nope'. It has: " in wrong.stderr
    assert checksums(env["ollama"], env["lmstudio"], env["folder"]) == before


@pytest.mark.slow
def test_chat_and_bench_with_an_ollama_model_run_in_place(env) -> None:
    before = checksums(env["ollama"], env["lmstudio"], env["folder"])
    out = _cli("chat", "-m", "ollama:smollm2:135m", "-p", "What is the capital of France?", "--temp", "0",
               "--quiet", env_vars=_no_service_store(env), timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    bench = _cli("bench", "-m", "ollama:smollm2:135m", "--reps", "1", "--warmup", "0", "--tokens", "4",
                 "--threads", "2", env_vars=_no_service_store(env), timeout=300)
    assert bench.returncode == 0, bench.stderr
    assert "smollm2:135m" in bench.stdout
    assert checksums(env["ollama"], env["lmstudio"], env["folder"]) == before


def test_a_quantize_plan_reads_the_store_and_writes_outside_it(env) -> None:
    from localllm.quantize.jobs import plan_job

    plan = plan_job("ollama:smollm2:135m", "q8_0")
    assert Path(plan.src).parent == env["ollama"] / "blobs"
    assert plan.out.name == "smollm2-135m.Q8_0.gguf" and env["home"] not in plan.out.parents


def test_stores_can_be_turned_off_and_a_missing_folder_is_a_note(env, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("LOCALLLM_STORES", "lmstudio")
    assert {e.source for e in library.list_models()} >= {"lmstudio"}
    assert not {"ollama", "folder"} & {s.tool for e in library.list_models() for s in e.sources}
    monkeypatch.setenv("LOCALLLM_STORES", "none")
    assert stores.scan().found == []
    assert stores.resolve("ollama:smollm2:135m")  # a ref names its store: it is read anyway
    monkeypatch.setenv("LOCALLLM_STORES", "folder")
    (tmp_path / "localllm" / "settings.toml").write_text(f"model_folders = [{json.dumps(str(tmp_path / 'gone'))}]\n")
    assert stores.scan().notes == [f"folder: {tmp_path / 'gone'} (in the settings' model_folders) does not exist"]
