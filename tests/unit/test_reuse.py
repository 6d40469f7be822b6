"""Why a turn reused fewer KV-cache tokens than the turns before hold: the pure rule, then a real worker."""

from __future__ import annotations

import pytest

from localllm.chat.reuse import EDITED, SYSTEM, TEMPLATE, TRIMMED, reuse_note

SYS = {"role": "system", "content": "Be brief."}
Q1, A1, Q2 = ({"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
              {"role": "user", "content": "And now?"})


def test_each_reason() -> None:
    before = [SYS, Q1, A1]
    assert reuse_note(None, 0, [SYS, Q1], 0, False) == ""  # nothing was cached
    assert reuse_note(before, 30, [SYS, Q1, A1, Q2], 29, False) == ""  # all but the reply's end token
    assert reuse_note(before, 30, [SYS, Q1, A1, Q2], 12, False) == TEMPLATE
    assert reuse_note(before, 30, [{"role": "system", "content": "Be long."}, Q1, A1, Q2], 3, False) == SYSTEM
    assert reuse_note(before, 30, [SYS, Q2], 5, True) == TRIMMED
    assert reuse_note(before, 30, [SYS, {"role": "user", "content": "Hey"}], 5, False) == EDITED
    assert reuse_note(before, 30, [SYS, Q1], 20, False) == ""  # regenerate: the same question again


@pytest.mark.slow
def test_a_changed_system_prompt_is_named_and_the_next_turn_reuses_again() -> None:
    from localllm.chat.session import ChatSession, ReplyDone
    from localllm.config import LoadOptions, SamplingParams

    session = ChatSession(sampling=SamplingParams(temperature=0.0, max_tokens=8))
    try:
        session.load("embedded", LoadOptions(context=1024))

        def turn(text: str):
            return next(e for e in session.send(text) if isinstance(e, ReplyDone)).stats

        first = turn("What is the capital of France?")
        second = turn("And of Italy?")
        assert first.cached_tokens == 0 and first.cache_note == ""
        assert second.cached_tokens >= first.prompt_tokens and second.cache_note == ""
        session.system_prompt = "You answer in one word."
        third = turn("And of Spain?")
        assert third.cache_note == SYSTEM and third.cached_tokens < second.prompt_tokens
        fourth = turn("And of Portugal?")
        assert fourth.cache_note == "" and fourth.cached_tokens >= third.prompt_tokens
    finally:
        session.close()
