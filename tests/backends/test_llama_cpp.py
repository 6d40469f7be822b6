"""The llama.cpp backend on the real embedded model, in this process."""

from __future__ import annotations

import threading

import pytest

from localllm.backends.base import Chunk, Finish, Prefill
from localllm.backends.registry import create
from localllm.config import LoadOptions, SamplingParams

pytestmark = pytest.mark.slow  # real model workers (or servers): not in the quick tier

MSGS = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def backend(model_path):
    b = create("llama_cpp")
    b.load(model_path, LoadOptions(context=1024, threads=2))
    yield b
    b.unload()


def _run(backend, sampling, cancel=None):
    events = list(backend.stream_chat(MSGS, sampling, cancel or threading.Event()))
    return events, "".join(e.text for e in events if isinstance(e, Chunk))


def test_load_reports_the_model(model_path) -> None:
    b = create("llama_cpp")
    info = b.load(model_path, LoadOptions(context=512, threads=1))
    try:
        assert info.backend == "llama_cpp" and info.quant == "Q4_1"
        assert info.n_ctx == 512 and info.n_ctx_train == 8192 and info.n_threads == 1
        assert info.chat_template == "model"
    finally:
        b.unload()


def test_chat_template_from_the_gguf(backend) -> None:
    # SmolLM2 uses ChatML from its own template: the rendered prompt has its markers
    tokens = backend._prompt_tokens(MSGS)
    text = backend._llm.detokenize(tokens, special=True).decode()
    assert "<|im_start|>system" in text and text.rstrip().endswith("<|im_start|>assistant")
    assert backend.count_tokens(MSGS) == len(tokens)


def test_stream_events_in_order(backend) -> None:
    greedy = SamplingParams(temperature=0, max_tokens=32, seed=1)
    events, text = _run(backend, greedy)
    assert isinstance(events[0], Prefill) and events[0].prompt_tokens == backend.count_tokens(MSGS)
    assert isinstance(events[-1], Finish) and events[-1].reason in ("stop", "length")
    assert len(text.split()) >= 3  # real words from the real model


def test_ignore_eos_generates_exactly_max_tokens(backend) -> None:
    events, _ = _run(backend, SamplingParams(max_tokens=60, ignore_eos=True, seed=3))
    assert sum(e.n_tokens for e in events if isinstance(e, Chunk)) == 60
    assert events[-1] == Finish("length")


def test_cancel_stops_soon(backend) -> None:
    cancel = threading.Event()
    produced = 0
    reason = None
    for ev in backend.stream_chat(MSGS, SamplingParams(max_tokens=400, ignore_eos=True), cancel):
        if isinstance(ev, Chunk):
            produced += ev.n_tokens
            if produced == 5:
                cancel.set()
        if isinstance(ev, Finish):
            reason = ev.reason
    assert reason == "cancelled" and produced == 5


def test_prompt_longer_than_context_is_refused(model_path) -> None:
    b = create("llama_cpp")
    b.load(model_path, LoadOptions(context=64, threads=1))
    try:
        with pytest.raises(ValueError, match="does not fit"):
            list(b.stream_chat([{"role": "user", "content": "word " * 200}], SamplingParams(),
                               threading.Event()))
    finally:
        b.unload()


def test_a_stop_interrupts_the_prompt_evaluation(model_path) -> None:
    """A long prompt's evaluation takes seconds (minutes on a big model); a stop ends it at once instead
    of after the whole prompt, and the next request on the same context answers as a fresh one does."""
    import time

    b = create("llama_cpp")
    b.load(model_path, LoadOptions(context=2048, threads=2))
    eight = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, seed=1)

    def long(word: str) -> list[dict]:
        return [{"role": "user", "content": f"{word} " * 1500 + "Summarise."}]

    def text(messages, cancel=None) -> tuple[str, Finish]:
        events = list(b.stream_chat(messages, eight, cancel or threading.Event()))
        return "".join(e.text for e in events if isinstance(e, Chunk)), events[-1]

    try:
        reference = text(long("pear"))
        assert reference[0] and reference[1] == Finish("length")
        began = time.perf_counter()
        text(long("apple"))
        full_s = time.perf_counter() - began  # the whole prompt, on this host, now

        cancel = threading.Event()
        stream = b.stream_chat(long("pear"), eight, cancel)  # shares only the template's start with apple
        assert isinstance(next(stream), Prefill)
        threading.Timer(full_s * 0.2, cancel.set).start()
        began = time.perf_counter()
        assert list(stream)[-1] == Finish("cancelled")
        took = time.perf_counter() - began
        assert took < full_s * 0.6, f"stopped after {took:.2f} s; the whole prompt takes {full_s:.2f} s"

        assert text(long("pear")) == reference  # what the aborted batch left in the cache is not reused
    finally:
        b.unload()
