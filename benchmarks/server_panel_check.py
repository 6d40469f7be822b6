"""The panel's server figures against the server's `/metrics` read directly, over a multi-turn
conversation (the cached prompt tokens should grow turn by turn), then a short sweep with the server
columns.

Meant for llama.cpp's own `llama-server --metrics`, built from the tree vendored in the
llama-cpp-python sdist (about 10 minutes on 2 cores):

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 && tar xzf llama_cpp_python-*.tar.gz
    cmake -S llama_cpp_python-0.3.36/vendor/llama.cpp -B build-server -DLLAMA_BUILD_SERVER=ON -DGGML_NATIVE=ON
    cmake --build build-server --target llama-server -j 2
    build-server/bin/llama-server -m MODEL.gguf --port 8080 --metrics --slots -c 4096 -np 4 &
    python benchmarks/server_panel_check.py --url http://127.0.0.1:8080 --turns 4 --sweep 1,2,4

Any OpenAI-compatible server works; one without `/metrics` shows what it lacks.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.request

from localllm.models.endpoints import openai_client
from localllm.models.server_stats import ServerStatsReader, server_root

QUESTIONS = ["Name three rivers in Europe.", "Which of them is the longest?", "How long is it, in km?",
             "And which countries does it flow through?", "Summarise our conversation in one line."]
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)")


def direct(url: str) -> dict[str, float]:
    """/metrics read without prometheus_client: `name value` lines, label sets summed (the check's own
    reading, independent of the parser the panel uses)."""
    try:
        body = urllib.request.urlopen(server_root(url) + "/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in body.splitlines():
        m = _LINE.match(line)
        if m and not line.startswith("#"):
            try:
                out[m[1]] = out.get(m[1], 0.0) + float(m[2])
            except ValueError:
                continue
    return out


def delta(a: dict[str, float], b: dict[str, float], name: str) -> float | None:
    if name not in b:
        return None
    return b[name] - a.get(name, 0.0) if b[name] >= a.get(name, 0.0) else b[name]


def rate(num: float | None, den: float | None) -> str:
    return "-" if num is None or not den else f"{num / den:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--sweep", default="", help="concurrency levels, e.g. 1,2,4 (none: no sweep)")
    args = ap.parse_args(argv)

    client = openai_client(args.url, None)
    model = client.models.list().data[0].id
    reader = ServerStatsReader(args.url, key_env=None, model=model)
    print(f"server kind: {reader.probe()}; model {model}")
    first = reader.sample()
    if first.missing:
        print(f"it lacks: {', '.join(first.missing)}")
    print("| turn | prompt tok (panel / direct) | cached tok (panel / direct / reply timings) | "
          "prefill tok/s (panel / direct) | decode tok/s (panel / direct) |")
    print("|---|---|---|---|---|")
    history: list[dict[str, str]] = []
    L = "llamacpp:"
    for turn in range(1, args.turns + 1):
        history.append({"role": "user", "content": QUESTIONS[(turn - 1) % len(QUESTIONS)]})
        before = direct(args.url)
        stream = client.chat.completions.create(model=model, messages=history,  # type: ignore[arg-type]
                                                max_tokens=args.tokens, temperature=0, stream=True)
        text, timings = "", {}
        for chunk in stream:
            text += "".join(c.delta.content or "" for c in chunk.choices if c.delta is not None)
            timings = (chunk.model_extra or {}).get("timings") or timings  # llama-server: the last chunk
        time.sleep(0.2)
        after = direct(args.url)
        panel = reader.sample()
        history.append({"role": "assistant", "content": text})
        cells = [
            f"{panel.prompt_tokens} / {delta(before, after, L + 'prompt_tokens_total')}",
            f"{panel.prompt_tokens_cached} / {delta(before, after, L + 'prompt_tokens_cached_total')} / "
            f"{timings.get('cache_n', '-')}",
            f"{'-' if panel.prefill_tok_s is None else f'{panel.prefill_tok_s:.1f}'} / "
            + rate(delta(before, after, L + "prompt_tokens_total"), delta(before, after, L + "prompt_seconds_total")),
            f"{'-' if panel.decode_tok_s is None else f'{panel.decode_tok_s:.1f}'} / "
            + rate(delta(before, after, L + "tokens_predicted_total"),
                   delta(before, after, L + "tokens_predicted_seconds_total")),
        ]
        print(f"| {turn} | " + " | ".join(cells) + " |")
    print("\npanel rows of the last turn:", json.dumps(dict(panel.figures())))
    if args.sweep:
        from localllm.bench.load import SweepPlan, markdown, run_sweep

        levels = [int(x) for x in args.sweep.split(",")]
        result = run_sweep(SweepPlan(args.url, levels, requests=8, gen_tokens=args.tokens),
                           progress=lambda line: print(line, file=sys.stderr))
        print()
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
