"""The KV-cache type reaches llama.cpp: its own log gives the buffer the plan counted, with flash
attention on for a quantized cache; the reply still comes. Real worker, the embedded model."""

from __future__ import annotations

import re

import pytest

from localllm.chat.session import ChatSession, ReplyDone
from localllm.config import LoadOptions, SamplingParams

pytestmark = pytest.mark.slow
MiB = 2**20


@pytest.mark.parametrize("kv_type, flash", [("q8_0", "enabled"), ("q4_0", "enabled"), ("f16", "disabled")])
def test_the_kv_type_is_what_llama_cpp_allocates_and_the_plan_counts(kv_type, flash) -> None:
    session = ChatSession(sampling=SamplingParams(temperature=0.0, max_tokens=8))
    try:
        session.load("embedded", LoadOptions(context=2048, kv_type=kv_type))
        done = next(e for e in session.send("What is the capital of France?") if isinstance(e, ReplyDone))
        log = session.log_path.read_text(errors="replace")
        assert done.turn.content.strip() and session.model.extra["kv_type"] == kv_type
        assert session.plan.kv_type == kv_type
    finally:
        session.close()
    buffer = float(re.search(r"CPU KV buffer size =\s+([\d.]+) MiB", log).group(1))
    assert buffer == pytest.approx(session.plan.estimate.kv_cpu / MiB, abs=0.01)
    assert re.search(rf"flash_attn\s+= {flash}", log)
