"""Issues 23 and 24 meet: an `ollama:NAME[:TAG]` model's params layer (what Ollama runs it with) is a
source of its sampling defaults ("ollama", above the GGUF's own keys), and its num_ctx the context it
loads with when neither the run nor the settings chose one. A small Ollama store is built under a
temporary HOME from the embedded GGUF (its blob a hard link), and never changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localllm.config import LoadOptions, SamplingParams
from localllm.config.settings import Settings
from localllm.models import stores
from localllm.models.sampling_defaults import (
    SamplingRequest,
    context_for,
    ollama_options,
    resolve_sampling,
)
from tests.unit.test_stores import _blob, _link, _sha, checksums

REPO = Path(__file__).resolve().parents[2]
PROMPT = "What is the capital of France?"
PARAMS = {"temperature": 0.3, "stop": ["<|im_end|>"], "num_ctx": 4096}
SYSTEM = "You are Ollama's SmolLM. Réponds brièvement."  # a Modelfile's SYSTEM, not ASCII


def _manifest(models: Path, name: str, layers: list[dict]) -> None:
    path = models / "manifests" / "registry.ollama.ai" / "library" / name.replace(":", "/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))


@pytest.fixture(scope="module")
def store(tmp_path_factory, model_path) -> Path:
    """~/.ollama/models with smollm2:135m (params: temperature 0.3, stop, num_ctx 4096; a SYSTEM layer)
    and the same blob as bare:latest, with neither layer."""
    home = tmp_path_factory.mktemp("ollama-home")
    models = home / ".ollama" / "models"
    sha = _sha(Path(model_path))
    _link(Path(model_path), models / "blobs" / f"sha256-{sha}")
    model = {"mediaType": stores.ollama.MODEL_LAYER, "digest": f"sha256:{sha}",
             "size": Path(model_path).stat().st_size}
    params = {"mediaType": stores.ollama.PARAMS_LAYER, **_blob(models, json.dumps(PARAMS).encode())}
    system = {"mediaType": stores.ollama.SYSTEM_LAYER, **_blob(models, SYSTEM.encode())}
    _manifest(models, "smollm2:135m", [model, params, system])
    _manifest(models, "bare:latest", [model])
    return home


@pytest.fixture
def env(store, monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("HOME", str(store))
    monkeypatch.setenv("OLLAMA_MODELS", str(store / ".ollama" / "models"))
    monkeypatch.setenv("LOCALLLM_STORES", "ollama")  # conftest turns the stores off
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path / "localllm"))
    monkeypatch.setattr(stores.ollama, "ollama_roots", lambda: [store / ".ollama" / "models"])
    (tmp_path / "localllm").mkdir()
    return store / ".ollama" / "models"


def values(resolved) -> dict:
    return {k: (v["value"], v["from"]) for k, v in resolved.to_dict().items()}


def test_ollama_names_map_to_knobs() -> None:
    notes: list[str] = []
    knobs, n_ctx = ollama_options({"temperature": 0.2, "top_p": 0.9, "top_k": 40.0, "min_p": 0.05,
                                   "repeat_penalty": 1.1, "stop": "<|im_end|>", "num_predict": 128,
                                   "num_ctx": 4096.0, "seed": 42, "mirostat": 2, "num_gpu": 99}, notes=notes)
    assert knobs == {"temperature": 0.2, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1,
                     "stop": ["<|im_end|>"], "max_tokens": 128}
    assert n_ctx == 4096 and not notes  # unknown keys (seed, mirostat, num_gpu) are ignored quietly
    for endless in (-1, -2, 0):  # Ollama's "no limit" and "fill the context": our max_tokens stays
        assert ollama_options({"num_predict": endless}) == ({}, None)
    knobs, n_ctx = ollama_options({"temperature": 9.0, "top_p": 0.5, "num_ctx": 16, "stop": [3]},
                                  "ollama:x (Ollama's params)", notes)
    assert (knobs, n_ctx) == ({"top_p": 0.5}, None)
    assert len(notes) == 3 and all(n.startswith("ollama:x (Ollama's params): ") for n in notes)
    assert any("temperature" in n for n in notes) and any("num_ctx" in n for n in notes)


def test_an_ollama_ref_takes_its_params_layer_and_changes_no_store(env) -> None:
    before = checksums(env)
    resolved = resolve_sampling("ollama:smollm2:135m")
    got = values(resolved)
    assert got["temperature"] == (0.3, "ollama") and got["stop"] == (["<|im_end|>"], "ollama")
    # Ollama's name and the file's shape say it is the catalog's SmolLM2-135M: the card fills what the
    # params layer does not give; a name the catalog does not know gets the app's defaults
    assert got["top_p"] == (0.9, "catalog") and got["top_k"] == (SamplingParams().top_k, "default")
    assert not resolved.notes
    bare = values(resolve_sampling("ollama:bare:latest"))
    assert bare["top_p"] == (SamplingParams().top_p, "default") and bare["system_prompt"][1] == "default"
    assert resolved.n_ctx == (4096, "ollama")
    assert context_for(LoadOptions().context, resolved) == (4096, "ollama")
    # this run's values, and the ones saved for the model by its Ollama name, win
    settings = Settings(models={"smollm2:135m": {"temperature": 0.4}})
    got = values(resolve_sampling("ollama:smollm2:135m", SamplingRequest(run={"stop": ["x"]}, settings=settings)))
    assert got["temperature"] == (0.4, "saved") and got["stop"] == (["x"], "user")
    # its SYSTEM layer is the new conversation's system prompt, over the catalog's; a typed one wins
    assert (resolved.system_prompt, resolved.sources["system_prompt"]) == (SYSTEM, "ollama")
    typed = resolve_sampling("ollama:smollm2:135m", SamplingRequest(run={"system_prompt": "Be terse."}))
    assert (typed.system_prompt, typed.sources["system_prompt"]) == ("Be terse.", "user")
    # the same blob by its path, or under a name with no params layer: no "ollama" source (predictable)
    blob = next(p for p in (env / "blobs").iterdir() if p.stat().st_size > 1_000_000)
    for other in (str(blob), "ollama:bare:latest"):
        same = resolve_sampling(other)
        assert "ollama" not in same.sources.values() and same.n_ctx is None, other
    assert checksums(env) == before


def test_resolving_scans_the_store_once(env, monkeypatch) -> None:
    # the params, the SYSTEM layer, the catalog match and the file's own keys all come from one scan of
    # the store (it reads every manifest): it was read four times
    scans = []
    real = stores.scan
    monkeypatch.setattr(stores, "scan", lambda *a, **k: scans.append(a) or real(*a, **k))
    resolved = resolve_sampling("ollama:smollm2:135m")
    assert resolved.sources["temperature"] == "ollama" and resolved.sources["system_prompt"] == "ollama"
    assert resolved.sources["top_p"] == "catalog" and len(scans) == 1


def test_the_context_is_the_model_s_only_where_nobody_chose_one(env) -> None:
    resolved = resolve_sampling("ollama:smollm2:135m")
    default = LoadOptions().context
    assert context_for(default, resolved, SamplingRequest()) == (4096, "ollama")
    assert context_for(default, resolved, SamplingRequest(ctx_given=True)) == (default, "user")  # --ctx 2048
    assert context_for(1024, resolved, SamplingRequest(settings=Settings(context=1024))) == (1024, "settings")
    assert context_for(1024, resolved, SamplingRequest()) == (1024, "user")
    assert context_for(default, resolve_sampling("ollama:bare:latest")) == (default, "default")


def _cli(env: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "localllm", *args], capture_output=True, text=True, timeout=300,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_plan_json_plans_the_ollama_context(env) -> None:
    plan = _cli(env, "plan", "ollama:smollm2:135m", "--json")
    assert (plan["context"], plan["context_from"]) == (4096, "ollama")
    assert plan["sampling"]["temperature"] == {"value": 0.3, "from": "ollama"}
    plan = _cli(env, "plan", "ollama:smollm2:135m", "--json", "--ctx", "1024")
    assert (plan["context"], plan["context_from"]) == (1024, "user")


@pytest.mark.slow
def test_chat_json_shows_the_ollama_sources_and_a_flag_wins(env) -> None:
    before = checksums(env)
    args = ("chat", "-m", "ollama:smollm2:135m", "-p", PROMPT, "--json", "--max-tokens", "8")
    record = _cli(env, *args)
    assert record["sampling"]["temperature"] == {"value": 0.3, "from": "ollama"}
    assert record["sampling"]["stop"] == {"value": ["<|im_end|>"], "from": "ollama"}
    assert record["context"] == {"value": 4096, "from": "ollama"} and record["model"]["n_ctx"] == 4096
    record = _cli(env, *args, "--temp", "0.5", "--ctx", "512")
    assert record["sampling"]["temperature"] == {"value": 0.5, "from": "user"}
    assert record["sampling"]["stop"]["from"] == "ollama"
    assert record["context"] == {"value": 512, "from": "user"} and record["model"]["n_ctx"] == 512
    assert checksums(env) == before
