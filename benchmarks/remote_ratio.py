"""Decode speed through localllm's remote backend against a bare openai-SDK streaming loop, side by
side, from the same OpenAI-compatible server (started here: llama-cpp-python's server with the
embedded model, unless --endpoint is given). Target ratio >= 0.98.

    python benchmarks/remote_ratio.py [--endpoint URL] [--tokens 200] [--reps 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from localllm.chat.session import ChatSession, ReplyDone
from localllm.config import LoadOptions, SamplingParams, default_threads
from localllm.models.embedded import embedded_model_path
from localllm.models.endpoints import api_base
from localllm.runtime.metrics import decode_rate

PROMPT = "Write a long story about a lighthouse keeper and a storm."
SYSTEM = "You are a helpful assistant."


def start_server(threads: int) -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()),
                             "--port", str(port), "--n_threads", str(threads), "--verbose", "False"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=1).read()
            return url, proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start")


def bare(client, model: str, tokens: int, seed: int) -> tuple[float, int]:
    times = []
    stream = client.chat.completions.create(
        model=model, stream=True, max_tokens=tokens, seed=seed, temperature=0.7,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}])
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
    return decode_rate(times) or 0.0, len(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=None)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    proc = None
    url = args.endpoint
    if url is None:
        url, proc = start_server(args.threads)
    import openai

    try:
        client = openai.OpenAI(base_url=api_base(url), api_key="none", max_retries=0)
        model = client.models.list().data[0].id
        session = ChatSession(system_prompt=SYSTEM,
                              sampling=SamplingParams(max_tokens=args.tokens, seed=args.seed, temperature=0.7))
        session.load(url, LoadOptions(remote_model=model), backend="remote")
        base, ours = [], []
        for rep in range(args.reps + 1):  # the first pair warms up
            b, n_bare = bare(client, model, args.tokens, args.seed)
            session.clear()
            stats = next(e.stats for e in session.send(PROMPT) if isinstance(e, ReplyDone))
            if rep:
                base.append(b)
                ours.append(stats.decode_tok_s or 0.0)
                print(f"rep {rep}: bare {b:.1f} tok/s ({n_bare} chunks) · localllm "
                      f"{stats.decode_tok_s:.1f} tok/s ({stats.completion_tokens} tokens)")
        session.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
    ratio = statistics.mean(ours) / statistics.mean(base)
    sd = statistics.stdev
    print(f"bare openai stream loop   {statistics.mean(base):7.1f} ± {sd(base):4.1f} tok/s")
    print(f"localllm remote backend   {statistics.mean(ours):7.1f} ± {sd(ours):4.1f} tok/s")
    print(f"ratio remote/bare: {ratio:.3f} (target >= 0.98) {'OK' if ratio >= 0.98 else 'BELOW TARGET'}")
    return 0 if ratio >= 0.98 else 1


if __name__ == "__main__":
    sys.exit(main())
