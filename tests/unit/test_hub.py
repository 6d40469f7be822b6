"""Hub access against the loopback Hub: listing, picking files, and one clear message per failure."""

from __future__ import annotations

import logging

import pytest

from localllm.config.paths import hf_hub_cache
from localllm.hub.download import DownloadJob
from localllm.hub.repos import (
    AccessDenied,
    HubConfig,
    HubUnreachable,
    NoMatchingFiles,
    RemoteFile,
    RemoteFileNotFound,
    RepoListing,
    RepoNotFound,
    RevisionNotFound,
    Selection,
    available_quants,
    list_repo,
    quant_of,
    select_files,
)
from tests.hubserver import checkpoint_files, free_port, gguf_data, hub_config, hub_server  # noqa: F401

TOKEN = "hf_SeCrEtToKeN1234567890abcdef"


@pytest.fixture
def hub(hub_server, gguf_data, tmp_path):  # noqa: F811
    hub_server.add_repo("acme/Tiny-GGUF", {
        "README.md": b"# tiny",
        "tiny-Q4_K_M.gguf": gguf_data,
        "tiny.Q8_0.gguf": gguf_data + b"\0" * 8,
        "big/tiny-Q6_K-00001-of-00002.gguf": gguf_data[:600_000],
        "big/tiny-Q6_K-00002-of-00002.gguf": gguf_data[600_000:],
        "mmproj-tiny-F16.gguf": b"GGUF" + b"\0" * 100,
    })
    hub_server.add_repo("acme/tiny-ckpt", checkpoint_files())
    hub_server.add_repo("acme/gated", {"m-Q4_K_M.gguf": gguf_data}, gated=True, tokens={TOKEN})
    hub_server.add_repo("acme/private", {"m-Q4_K_M.gguf": gguf_data}, private=True, tokens={TOKEN})
    return hub_server, hub_config(hub_server, tmp_path / "hub")


def test_listing_has_every_file_with_size_and_hash(hub, gguf_data) -> None:  # noqa: F811
    server, cfg = hub
    listing = list_repo("acme/Tiny-GGUF", cfg=cfg)
    assert listing.commit == server.repos["acme/Tiny-GGUF"].commit and listing.revision == "main"
    q4 = listing.file("tiny-Q4_K_M.gguf")
    assert q4.size == len(gguf_data) and len(q4.sha256) == 64 and q4.quant == "Q4_K_M"
    readme = listing.file("README.md")
    assert readme.size == 6 and readme.sha256 is None and len(readme.blob_id) == 40
    assert available_quants(listing) == {"Q4_K_M": len(gguf_data), "Q6_K": len(gguf_data),
                                         "Q8_0": len(gguf_data) + 8}


@pytest.mark.parametrize(("name", "quant"), [
    ("model-Q4_K_M.gguf", "Q4_K_M"), ("model.q8_0.gguf", "Q8_0"), ("Qwen2.5-0.5B-Instruct-q4_k_m.gguf", "Q4_K_M"),
    ("m-IQ4_XS.gguf", "IQ4_XS"), ("m_Q4_K-00001-of-00003.gguf", "Q4_K"), ("m-f16.gguf", "F16"),
    ("m-BF16.gguf", "BF16"), ("Qwen2-7B.gguf", None), ("llama-3-8b-Q5_K_S.gguf", "Q5_K_S"),
])
def test_quant_of_file_names(name: str, quant: str | None) -> None:
    assert quant_of(name) == quant


def test_quant_selection_is_case_insensitive_and_takes_all_split_parts(hub) -> None:
    _, cfg = hub
    listing = list_repo("acme/Tiny-GGUF", cfg=cfg)
    assert [f.path for f in select_files(listing, quant="q8_0").files] == ["tiny.Q8_0.gguf"]
    split = select_files(listing, quant="Q6_K")
    assert [f.path for f in split.files] == ["big/tiny-Q6_K-00001-of-00002.gguf",
                                             "big/tiny-Q6_K-00002-of-00002.gguf"]
    assert split.kind == "gguf" and split.quant == "Q6_K"
    by_file = select_files(listing, filename="tiny-Q6_K-00002-of-00002.gguf")  # one part brings the others
    assert len(by_file.files) == 2
    default = select_files(listing)
    assert [f.path for f in default.files] == ["tiny-Q4_K_M.gguf"] and "default quant" in default.note


def test_quant_not_there_lists_what_is(hub) -> None:
    _, cfg = hub
    listing = list_repo("acme/Tiny-GGUF", cfg=cfg)
    with pytest.raises(NoMatchingFiles, match=r"no Q2_K GGUF file\. Available quants: Q4_K_M \(1\.2 MB\)"):
        select_files(listing, quant="Q2_K")
    with pytest.raises(RemoteFileNotFound, match="has no file 'nope.gguf'"):
        select_files(listing, filename="nope.gguf")
    several = RepoListing("a/b", "main", "c" * 40, (RemoteFile("x-Q8_0.gguf", 1), RemoteFile("y-Q5_0.gguf", 1)))
    with pytest.raises(NoMatchingFiles, match="pick one with --quant: Q5_0"):
        select_files(several)


def test_checkpoint_selection_takes_only_what_loads_and_never_pickle(hub) -> None:
    _, cfg = hub
    sel = select_files(list_repo("acme/tiny-ckpt", cfg=cfg))
    assert sel.kind == "checkpoint"
    assert [f.path for f in sel.files] == [
        "config.json", "generation_config.json", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors", "model.safetensors.index.json", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json"]  # no pytorch_model.bin, README or onnx/
    pickle_only = RepoListing("a/b", "main", "c" * 40,
                              (RemoteFile("config.json", 2), RemoteFile("pytorch_model.bin", 9)))
    with pytest.raises(NoMatchingFiles, match="only has pickle .bin weights"):
        select_files(pickle_only)
    assert [f.path for f in select_files(pickle_only, allow_pickle=True).files] == [
        "config.json", "pytorch_model.bin"]


def test_repo_and_revision_not_found(hub) -> None:
    _, cfg = hub
    with pytest.raises(RepoNotFound, match=r"no model repo acme/nope on http://127\.0\.0\.1:\d+ \(HTTP 404\)"):
        list_repo("acme/nope", cfg=cfg)
    with pytest.raises(RevisionNotFound, match="has no revision 'v9'"):
        list_repo("acme/Tiny-GGUF", "v9", cfg=cfg)
    with pytest.raises(Exception, match="not a valid repo id"):
        list_repo("not a repo", cfg=cfg)


def test_file_missing_on_the_hub(hub) -> None:
    _, cfg = hub
    listing = list_repo("acme/Tiny-GGUF", cfg=cfg)
    ghost = Selection("files", (RemoteFile("gone.gguf", 10),))
    with pytest.raises(RemoteFileNotFound, match="acme/Tiny-GGUF has no file 'gone.gguf' at revision main"):
        DownloadJob(listing, ghost, cfg).run()


def test_gated_repo_without_token_says_how_to_log_in_and_where_to_accept(hub) -> None:
    server, cfg = hub
    listing = list_repo("acme/gated", cfg=cfg)  # metadata of a gated repo is public, files are not
    with pytest.raises(AccessDenied) as err:
        DownloadJob(listing, select_files(listing), cfg).run()
    msg = str(err.value)
    assert "HTTP 401" in msg and "HF_TOKEN" in msg and "hf auth login" in msg
    assert f"accept the licence at {server.url}/acme/gated".lower() in msg.lower()


def test_gated_repo_with_a_token_without_access(hub) -> None:
    server, cfg = hub
    cfg = hub_config(server, cfg.cache_dir, token="hf_notAllowed000")
    listing = list_repo("acme/gated", cfg=cfg)
    with pytest.raises(AccessDenied, match=r"refused the token that was sent \(HTTP 403\)") as err:
        DownloadJob(listing, select_files(listing), cfg).run()
    assert f"{server.url}/acme/gated" in str(err.value) and "hf_notAllowed000" not in str(err.value)


def test_private_repo_is_401_with_login_hint(hub) -> None:
    _, cfg = hub
    with pytest.raises(AccessDenied, match=r"is private or gated \(or does not exist: check the spelling\) "
                                           r"and you are not logged in \(HTTP 401\)"):
        list_repo("acme/private", cfg=cfg)


def test_token_is_sent_to_the_hub_only_and_never_printed_or_logged(hub, caplog) -> None:
    server, cfg = hub
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    good = hub_config(server, cfg.cache_dir, token=TOKEN)
    listing = list_repo("acme/private", cfg=good)
    result = DownloadJob(listing, select_files(listing), good, retry_wait_s=0).run()
    assert result.paths[0].exists()
    head = [r for r in server.requests if r.method == "HEAD"]
    cdn = [r for r in server.requests if r.path.startswith("/cdn/")]
    assert head and all(r.authorized for r in head)
    assert cdn and not any(r.authorized for r in cdn)  # the signed CDN URL gets no token
    messages = [repr(good), str(good)]
    for repo in ("acme/private", "acme/gated"):  # the token stops working: 401 and 403 messages
        server.repos[repo].tokens.clear()
    gated = list_repo("acme/gated", cfg=good)
    for action in (lambda: list_repo("acme/private", cfg=good),
                   lambda: DownloadJob(gated, select_files(gated), good).run()):
        with pytest.raises(AccessDenied) as err:
            action()
        messages.append(str(err.value))
    assert all(TOKEN not in m for m in messages)
    assert TOKEN not in caplog.text and caplog.records  # the debug logs ran, without the token


def test_connection_refused_and_offline_mode(tmp_path, monkeypatch) -> None:
    cfg = HubConfig(endpoint=f"http://127.0.0.1:{free_port()}", cache_dir=tmp_path)
    with pytest.raises(HubUnreachable, match=r"Cannot reach the Hub at .* \(connection refused\)\. "
                                             r"Check the network"):
        list_repo("acme/Tiny-GGUF", cfg=cfg)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = HubConfig.from_env(endpoint=cfg.endpoint, cache_dir=tmp_path, token="")
    assert offline.offline
    with pytest.raises(HubUnreachable, match=r"Offline mode is on \(HF_HUB_OFFLINE\)"):
        list_repo("acme/Tiny-GGUF", cfg=offline)


def test_config_follows_the_hf_environment_at_call_time(tmp_path, monkeypatch) -> None:
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    assert hf_hub_cache() == tmp_path / "hfhome" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example/")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    cfg = HubConfig.from_env()
    assert cfg.cache_dir == tmp_path / "cache" and cfg.endpoint == "http://mirror.example"
    assert cfg.token == TOKEN and TOKEN not in repr(cfg) and not cfg.offline
