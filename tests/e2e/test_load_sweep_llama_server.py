"""A load sweep against llama-cpp-python's OpenAI-compatible server serving the embedded model: it runs
one request at a time, so time to first token grows with concurrency; it runs on this machine, so its
CPU time and RSS are measured."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from localllm.bench.load import SweepPlan, markdown, run_sweep
from localllm.models.embedded import embedded_model_path
from tests.hubserver import free_port

pytestmark = pytest.mark.slow  # a real model server


@pytest.fixture(scope="module")
def llama_server():
    port = free_port()
    # interrupt_requests False: by default a new request cuts the running stream short; here the
    # others queue, as the sweep expects of a server that serves one request at a time
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "2",
         "--interrupt_requests", "False", "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None, "llama_cpp.server exited"
                assert time.monotonic() < deadline, "llama_cpp.server did not start within 120 s"
                time.sleep(0.3)
        yield url, proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_sweep_against_a_real_server(llama_server) -> None:
    url, proc = llama_server
    result = run_sweep(SweepPlan(url, [1, 2, 4], requests=8, gen_tokens=16))
    assert result.model and not result.cancelled and not result.stopped_reason, result.stopped_reason
    assert [lr.level for lr in result.levels] == [1, 2, 4]
    for lr in result.levels:
        assert (lr.completed, lr.failed) == (8, 0), lr.errors
        assert all(0 < s.output_tokens <= 16 and s.ttft_s is not None for s in lr.samples)
        assert lr.output_tok_s > 0 and lr.ttft.p50 is not None and lr.e2e.p50 is not None
        assert lr.server_cpu_s is not None and lr.server_cpu_s > 0  # the server's own process
        assert lr.server_rss_peak_bytes is not None and lr.server_rss_peak_bytes > 50 * 2**20
    one, _, four = result.levels
    assert four.ttft.p50 > one.ttft.p50  # requests queue behind each other
    assert result.knee == 4  # no SLO: every level that completed everything meets it
    table = markdown(result)
    assert "Server CPU s" in table and "| 4 | 8/0 |" in table
    assert len(json.loads(json.dumps(result.to_dict()))["levels"][2]["samples"]) == 8
    assert proc.poll() is None
