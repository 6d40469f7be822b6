"""Batched generation for timing runs: B prompts decoded together in a real worker, on llama.cpp and on
transformers. Batching must pay (more tokens a second at batch 4 than at batch 1) and must not mix the
sequences (sequence 0 in a batch says what its prompt says alone)."""

from __future__ import annotations

import os
import time

import pytest

from localllm.backends.base import BatchTiming
from localllm.config import LoadOptions, SamplingParams
from localllm.errors import LocalLLMError
from localllm.runtime.worker import WorkerClient

pytestmark = pytest.mark.slow  # real model workers: not in the quick tier

PROMPT, NEW = 16, 8
# A shared 2-core host stalls a run now and then, a long batch-4 step more often than a short batch-1 one:
# the best of a few runs is the machine's speed. Tries stop at a clear result or when the budget is spent.
TRIES, BUDGET_S = 5, 40.0


@pytest.fixture
def worker(tmp_path):
    clients: list[WorkerClient] = []

    def start(path: str, options: LoadOptions, backend: str) -> WorkerClient:
        client = WorkerClient(log_dir=tmp_path)
        clients.append(client)
        client.start(timeout=60)
        client.request({"op": "load", "backend": backend, "path": path, "options": vars(options.resolved())},
                       "loaded", timeout=120)
        return client

    yield start
    for client in clients:
        client.close()


def _check(timing: BatchTiming, batch: int) -> None:
    assert timing.supported and timing.reason == ""
    assert (timing.batch, timing.prompt_tokens, timing.new_tokens) == (batch, PROMPT, NEW)
    assert len(timing.step_s) == NEW - 1 and all(s > 0 for s in timing.step_s)
    assert timing.prefill_s > 0 and timing.decode_s >= sum(timing.step_s) * 0.99
    assert len(timing.tokens) == batch and all(len(t) == NEW for t in timing.tokens)


def _batch_pays_and_keeps_sequences_apart(client: WorkerClient, label: str) -> None:
    best: dict[int, BatchTiming] = {}
    deadline = time.monotonic() + BUDGET_S
    for _ in range(TRIES):
        for batch in (1, 4):
            timing = client.batch(PROMPT, NEW, batch, seed=0, timeout=120)
            _check(timing, batch)
            if batch not in best or timing.throughput_tok_s > best[batch].throughput_tok_s:
                best[batch] = timing
        if best[4].throughput_tok_s > best[1].throughput_tok_s * 1.2 or time.monotonic() > deadline:
            break
    one, four = best[1], best[4]
    for t in (one, four):
        print(f"\n{label} batch {t.batch}: {t.throughput_tok_s:.1f} tok/s decode "
              f"({t.step_ms_mean:.1f} ms/step), prefill {t.prefill_tok_s:.0f} tok/s")
    assert four.throughput_tok_s > one.throughput_tok_s
    # greedy: the same prompt gives the same tokens alone and in a batch; the prompts differ, so do replies
    assert four.tokens[0] == one.tokens[0]
    assert len({tuple(t) for t in four.tokens}) == 4


def test_llama_cpp_batch(worker, model_path) -> None:
    client = worker(model_path, LoadOptions(context=2048, threads=2, extra_buffers="off"), "llama_cpp")
    _batch_pays_and_keeps_sequences_apart(client, "llama.cpp")
    with pytest.raises(LocalLLMError, match="at least 1"):  # an error event, and the worker lives on
        client.batch(0, NEW, 2, timeout=60)
    # the chat context is untouched: the worker still chats afterwards
    hi = [{"role": "user", "content": "Hi"}]
    events = list(client.chat(hi, SamplingParams(max_tokens=4, ignore_eos=True)))
    assert events[-1]["ev"] == "done" and sum(sum(e["n"]) for e in events if e["ev"] == "tok") == 4


def test_transformers_batch(worker, checkpoint) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    # one thread: torch's many small parallel regions stall whenever another process takes a core of a
    # shared 2-core host (500 ms a token at 2 threads where 1 thread takes 140 ms, measured)
    client = worker(checkpoint, LoadOptions(context=512, threads=1), "transformers")
    _batch_pays_and_keeps_sequences_apart(client, "transformers fp32")


def test_backend_without_batching_says_why(tmp_path) -> None:
    from localllm.runtime.worker_main import Worker

    class Remote:
        name = "remote"

    read, write = os.pipe()
    try:
        w = Worker(write)
        w.backend = Remote()
        timing = w.batch({"op": "batch", "prompt_tokens": 16, "new_tokens": 8, "batch": 4})
    finally:
        os.close(read)
        os.close(write)
    assert not timing.supported and timing.reason.startswith("the remote backend cannot batch")
    assert (timing.batch, timing.step_s, timing.throughput_tok_s, timing.step_ms_mean) == (4, [], 0.0, 0.0)


def test_timing_figures() -> None:
    t = BatchTiming(batch=4, prompt_tokens=16, new_tokens=8, prefill_s=0.5, decode_s=0.7, step_s=[0.1] * 7)
    assert t.throughput_tok_s == pytest.approx(4 * 7 / 0.7)
    assert t.prefill_tok_s == pytest.approx(4 * 16 / 0.5)
    assert t.step_ms_mean == pytest.approx(100.0)
