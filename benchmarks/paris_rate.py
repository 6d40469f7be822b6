"""How often README's first command gets a plain fact right at the model's resolved sampling defaults
(issue 24): asks "What is the capital of France?" with seeds 1..N through the real CLI
(`localllm chat -m embedded -p ... --json --seed N`, one process per seed, as a new user runs it) and
counts the replies that contain "Paris".

A new user has no settings: each run gets a fresh, empty LOCALLLM_HOME unless --own-settings.

    python benchmarks/paris_rate.py                 # the embedded model, seeds 1..10
    python benchmarks/paris_rate.py --seeds 20 -m PATH.gguf -- --temp 0.7   # extra chat flags after --
    python benchmarks/paris_rate.py --questions -- --system "You are a helpful assistant."
        # six factual questions, each with seeds 1..N: how the catalog's system prompt was chosen
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

PROMPT = "What is the capital of France?"
QUESTIONS = [(PROMPT, "paris"), ("What is the capital of Germany?", "berlin"),
             ("What is the capital of Italy?", "rome"), ("What is the capital of Japan?", "tokyo"),
             ("What is the capital of Spain?", "madrid"), ("Who wrote Romeo and Juliet?", "shakespeare")]


def ask(model: str, seed: int, extra: list[str], env: dict[str, str], prompt: str = PROMPT) -> dict:
    cmd = [sys.executable, "-m", "localllm", "chat", "-m", model, "-p", prompt, "--json", "--quiet",
           "--seed", str(seed), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"seed {seed}: localllm chat failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", default="embedded")
    p.add_argument("--seeds", type=int, default=10, help="seeds 1..N (default 10)")
    p.add_argument("--own-settings", action="store_true", help="use your settings.toml (default: none)")
    p.add_argument("--questions", action="store_true", help="six factual questions, not only Paris")
    p.add_argument("extra", nargs="*", help="more `localllm chat` flags, after --")
    args = p.parse_args(argv)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="paris-rate-") as home:
        if not args.own_settings:
            env["LOCALLLM_HOME"] = home
        if args.questions:
            return questions(args, env)
        hits = 0
        sampling = None
        for seed in range(1, args.seeds + 1):
            record = ask(args.model, seed, args.extra, env)
            ok = "paris" in record["reply"].lower()
            hits += ok
            sampling = record.get("sampling")
            print(f"seed {seed:2d} {'Paris' if ok else '-----'}  {record['reply'].strip()[:100]!r}")
    if sampling:
        print("sampling: " + ", ".join(f"{k} {v['value']} ({v['from']})" for k, v in sampling.items()))
    print(f"{hits}/{args.seeds} replies contain 'Paris'")
    return 0


def questions(args: argparse.Namespace, env: dict[str, str]) -> int:
    total = 0
    record: dict = {}
    for prompt, want in QUESTIONS:
        hits = 0
        for seed in range(1, args.seeds + 1):
            record = ask(args.model, seed, args.extra, env, prompt)
            hits += want in record["reply"].lower()
        total += hits
        print(f"{hits:3d}/{args.seeds}  {prompt}", flush=True)
    system = record.get("sampling", {}).get("system_prompt", {})
    print(f"system prompt ({system.get('from', '?')}): {system.get('value', '?')!r}")
    print(f"{total}/{args.seeds * len(QUESTIONS)} replies name the answer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
