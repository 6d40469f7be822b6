"""End to end: pull the embedded model's real GGUF from the loopback Hub, then chat with it
through the llama.cpp backend in a worker process."""

from __future__ import annotations

import pytest

from localllm.chat.session import ChatSession, ReplyDone, TextDelta
from localllm.config import LoadOptions, SamplingParams
from localllm.hub.download import DownloadJob
from localllm.hub.repos import list_repo, select_files
from localllm.models.library import cache_entries
from tests.hubserver import hub_config, hub_server  # noqa: F401


@pytest.mark.slow
def test_pulled_gguf_loads_and_chats(hub_server, model_path, tmp_path) -> None:  # noqa: F811
    with open(model_path, "rb") as fh:
        hub_server.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                            {"SmolLM2-135M-Instruct.Q4_1.gguf": fh.read(), "README.md": b"# SmolLM2"})
    hub_server.fault("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf",
                     drop_at=40_000_000)  # and a dropped connection on the way
    cfg = hub_config(hub_server, tmp_path / "hub")
    listing = list_repo("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", cfg=cfg)
    path = DownloadJob(listing, select_files(listing, quant="q4_1"), cfg, retry_wait_s=0).run().model_path
    assert hub_server.ranges("SmolLM2-135M-Instruct.Q4_1.gguf") == [None, "bytes=40000000-"]
    (entry,) = cache_entries(cfg.cache_dir)
    assert (entry.path, entry.quant, entry.usable) == (str(path), "Q4_1", True)
    session = ChatSession(sampling=SamplingParams(temperature=0, seed=1, max_tokens=4))
    try:  # one thread: on a shared 2-core machine two spinning threads made this 10x slower
        session.load(entry.path, LoadOptions(context=512, threads=1))
        events = list(session.send("Say hello."))
    finally:
        session.close()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    done = next(e for e in events if isinstance(e, ReplyDone))
    assert text.strip() and done.stats.completion_tokens > 0
