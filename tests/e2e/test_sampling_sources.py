"""Issue 24 end to end: `localllm chat --json` and `localllm plan --json` show each sampling value with its
source, for the embedded model (catalog), a GGUF carrying general.sampling.* (gguf), a value saved for
that model in settings.toml (saved) and a flag (user); a stop string ends a real reply."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from localllm.chat.session import ChatSession
from localllm.config import LoadOptions, SamplingParams
from tests.gguf_files import with_kv_copy

pytestmark = pytest.mark.slow  # real model workers

PROMPT = "What is the capital of France?"


def run(*args: str, home=None) -> dict:
    env = dict(os.environ)
    if home is not None:
        env["LOCALLLM_HOME"] = str(home)
    out = subprocess.run([sys.executable, "-m", "localllm", *args], capture_output=True, text=True,
                         timeout=180, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def sources(record: dict) -> dict:
    return {k: (v["value"], v["from"]) for k, v in record["sampling"].items()}


def test_chat_json_shows_each_value_with_its_source(model_path, tmp_path) -> None:
    first = run("chat", "-m", "embedded", "-p", PROMPT, "--json", "--max-tokens", "8", "--ctx", "512")
    got = sources(first)
    assert got["temperature"] == (0.2, "catalog") and got["top_p"] == (0.9, "catalog")
    assert got["top_k"] == (SamplingParams().top_k, "default")
    assert got["system_prompt"][1] == "catalog" and len(got["system_prompt"][0]) > len("Be brief.")
    # --system wins, and is what the model is sent: the prompt is shorter by the difference
    brief = run("chat", "-m", "embedded", "-p", PROMPT, "--json", "--max-tokens", "8", "--ctx", "512",
                "--system", "Be brief.")
    assert sources(brief)["system_prompt"] == ("Be brief.", "user")
    assert brief["prompt_tokens"] < first["prompt_tokens"]

    tuned = with_kv_copy(model_path, tmp_path / "tuned.gguf", {"general.sampling.temp": 0.6,
                                                               "general.sampling.top_k": 20})
    home = tmp_path / "home"  # LOCALLLM_HOME: settings.toml lives right there
    home.mkdir()
    (home / "settings.toml").write_text('[models."tuned"]\ntop_k = 3\n')  # pinned for this model, by its file's stem
    args = ("chat", "-m", tuned, "-p", PROMPT, "--json", "--max-tokens", "8", "--ctx", "512")
    record = run(*args, home=home)
    got = sources(record)
    assert got["temperature"] == (0.6, "gguf") and got["top_k"] == (3, "saved")
    assert got["top_p"] == (SamplingParams().top_p, "default")
    got = sources(run(*args, "--temp", "0.1", "--top-k", "5", "--min-p", "0.2", home=home))  # this run's flags win
    assert got["temperature"] == (0.1, "user") and got["top_k"] == (5, "user") and got["min_p"] == (0.2, "user")

    plan = run("plan", tuned, "--json", home=home)
    assert sources(plan)["temperature"] == (0.6, "gguf") and sources(plan)["top_k"] == (3, "saved")


def test_a_stop_string_ends_a_real_reply_and_is_not_shown(model_path) -> None:
    session = ChatSession(sampling=SamplingParams(temperature=0.0, seed=1, max_tokens=48))
    session.load(model_path, LoadOptions(context=512, threads=1))
    try:
        full = [e for e in session.send(PROMPT)][-1].turn.content
        assert "Paris" in full  # greedy: "The capital of France is Paris."
        session.clear()
        session.sampling = SamplingParams(temperature=0.0, seed=1, max_tokens=48, stop=["Paris"])
        done = [e for e in session.send(PROMPT)][-1]
        assert done.turn.content == full[:full.index("Paris")] and done.turn.status == "ok"
    finally:
        session.close()


def test_a_checkpoint_folder_s_generation_config_drives_a_real_reply(checkpoint, tmp_path) -> None:
    """The transformers backend: generation_config.json's do_sample = false (greedy) and eos_token_id
    reach the model; a stop string ends its reply too."""
    from localllm.models.sampling_defaults import SamplingRequest

    folder = tmp_path / "smol-ckpt"
    folder.mkdir()
    for item in os.scandir(checkpoint):  # the weights linked, not copied
        (folder / item.name).symlink_to(item.path)
    (folder / "generation_config.json").unlink(missing_ok=True)
    (folder / "generation_config.json").write_text(json.dumps(
        {"do_sample": False, "temperature": 0.9, "eos_token_id": [2]}))
    session = ChatSession(sampling_request=SamplingRequest(base=SamplingParams(max_tokens=24)))
    session.load(str(folder), LoadOptions(context=512, threads=2))
    try:
        got = {k: (v["value"], v["from"]) for k, v in session.resolved_sampling.to_dict().items()}
        assert got["temperature"] == (0.0, "generation_config")
        assert got["stop_token_ids"] == ([2], "generation_config")
        full = [e for e in session.send(PROMPT)][-1].turn.content
        assert "Paris" in full
        session.clear()
        session.resample(run={})  # same request, resolved again: still greedy
        session.sampling.stop = ["Paris"]
        done = [e for e in session.send(PROMPT)][-1]
        assert done.turn.content == full[:full.index("Paris")] and done.turn.status == "ok"
    finally:
        session.close()
