"""localllm's decode speed against llama.cpp's own `llama-bench`, same model, threads and depth.

llama-bench is not shipped with llama-cpp-python; build it from the sdist's vendor/llama.cpp:

    pip download llama-cpp-python==<version> --no-deps --no-binary :all: -d /tmp/lb
    tar xzf /tmp/lb/llama_cpp_python-*.tar.gz -C /tmp/lb
    cmake -S /tmp/lb/llama_cpp_python-*/vendor/llama.cpp -B /tmp/lb/build -DLLAMA_CURL=OFF
    cmake --build /tmp/lb/build --target llama-bench -j2
    python benchmarks/vs_llama_bench.py --llama-bench /tmp/lb/build/bin/llama-bench

Runs llama-bench's tg<N> at depth d (the prompt already in the KV cache) and localllm's session
path with a chat prompt of about d tokens generating N tokens, alternating, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from localllm.chat.session import ChatSession, ReplyDone
from localllm.config import LoadOptions, SamplingParams, default_threads
from localllm.models.embedded import embedded_model_path

PROMPT = "Write a short story about a lighthouse keeper and a storm."


def llama_bench(exe: str, model: str, tokens: int, depth: int, threads: int, reps: int) -> list[float]:
    out = subprocess.run([exe, "-m", model, "-p", "0", "-n", str(tokens), "-d", str(depth), "-t", str(threads),
                          "-r", str(reps), "-o", "json"], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    return [float(x) for x in rows[0]["samples_ts"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-bench", required=True, help="path of the llama-bench binary")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two")
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    model = str(embedded_model_path())
    session = ChatSession(sampling=SamplingParams(max_tokens=args.tokens, ignore_eos=True, seed=42))
    session.load(model, LoadOptions(threads=args.threads))
    depth = session._client.count_tokens(session.messages() + [{"role": "user", "content": PROMPT}])
    ours: list[float] = []
    theirs: list[float] = []
    try:
        for _ in range(args.rounds):
            theirs += llama_bench(args.llama_bench, model, args.tokens, depth, args.threads, args.reps)
            for _ in range(args.reps):
                session.clear()
                stats = next(e.stats for e in session.send(PROMPT) if isinstance(e, ReplyDone))
                ours.append(stats.decode_tok_s or 0.0)
    finally:
        session.close()
    sd = statistics.stdev
    print(f"model {model.rsplit('/', 1)[-1]} · tg{args.tokens} at depth {depth} · {args.threads} threads")
    print(f"llama-bench          {statistics.mean(theirs):7.1f} ± {sd(theirs):4.1f} tok/s (n={len(theirs)})")
    print(f"localllm session     {statistics.mean(ours):7.1f} ± {sd(ours):4.1f} tok/s (n={len(ours)})")
    ratio = statistics.mean(ours) / statistics.mean(theirs)
    print(f"ratio localllm/llama-bench: {ratio:.3f} (goal >= 0.98)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
