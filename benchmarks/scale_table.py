"""Fit and speed at the sizes people run: one row per shape, everything measured in this one run.

For the embedded SmolLM2-135M and the model factory's random-weight Llama shapes (1B, 3B, 8B;
benchmarks/model_factory.py), through localllm's own worker:
- file size and load time (worker start + llama.cpp load);
- plan vs measured peak RSS, defined the same way on both sides: the worker's RSS (resident file pages
  included, so the repacked weights' originals count while they stay resident), its peak over the load
  and one reply of 32 tokens after a ~400-token prompt, against the load plan's figure at that fill
  (`LoadPlan.at_fill(prompt + reply).rss_bytes`);
- prefill (a ~500-token prompt) and decode (128 tokens, end of turn ignored) tok/s, the decode's share
  of the memory-bandwidth roofline (bandwidth measured now / bytes read per token), and the speed the
  estimator gave before any calibration;
- with --llama-bench/--llama-server (llama.cpp's own tools, built from the sdist's vendor/llama.cpp, see
  vs_llama_bench.py): pp512, tg128 at our prompt's depth, the server's own `timings` for the same
  prompt and length, and our ratio to each. Each of our timed replies is followed by one run of each
  peer, so drift in the machine's speed falls on both sides; the peers run with flash attention off,
  as our f16 KV cache does (their default, auto, turns it on: on a 2-core EPYC that decoded 1B 8%
  slower and prefilled it 8% faster);
- a five-turn chat (equal new user text each turn, 16-token replies): TTFT at turn 5 against turn 1,
  with the tokens each had to read (the rest came from the KV cache) and the ratio per new token.

    python benchmarks/model_factory.py llama-1b llama-3b llama-8b
    python benchmarks/scale_table.py --llama-bench PATH --llama-server PATH
    python benchmarks/scale_table.py --shapes 135m llama-1b          # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model_factory import make  # noqa: E402
from quiet import quiet_stderr  # noqa: E402

from localllm.chat.session import ChatSession, ReplyDone  # noqa: E402
from localllm.config import LoadOptions, SamplingParams, default_threads  # noqa: E402
from localllm.machine import bandwidth, estimate  # noqa: E402
from localllm.models.catalog import ModelSpec  # noqa: E402
from localllm.models.embedded import embedded_model_path  # noqa: E402

MiB = 2**20
CTX = 2048
FILLER = ("The lighthouse keeper wrote down the weather every hour: wind from the west, rain at times, "
          "visibility fair, the sea moderate and the lamp burning steadily. ")
TURN = "Tell me one more fact about lighthouses, in a single sentence, please."


def model_path(shape: str) -> Path:
    return embedded_model_path() if shape == "135m" else make(shape, quiet=True)


def reply(session: ChatSession, text: str):
    return next(e for e in session.send(text) if isinstance(e, ReplyDone)).stats


def filler(session: ChatSession, tokens: int) -> str:
    per = session._require_client().count_tokens([{"role": "user", "content": FILLER}])
    return FILLER * max(1, tokens // max(1, per))


def ours(path: Path, threads: int, reps: int, between=None) -> dict:
    """`between(prompt_tokens)`: called after each of our timed replies, so the peers' runs alternate
    with ours (a VM's speed drifts by several % over minutes: back to back, that drift was the ratio)."""
    import psutil

    session = ChatSession(system_prompt="", sampling=SamplingParams(temperature=0.0, max_tokens=32, seed=1))
    row: dict = {}
    try:
        start = time.perf_counter()
        session.load(str(path), LoadOptions(context=CTX, threads=threads))
        row["load_s"] = time.perf_counter() - start
        # memory: one reply after a ~400-token prompt, against the plan at that fill
        stats = reply(session, filler(session, 400))
        rss_after = psutil.Process(session.worker_pid).memory_info().rss / MiB
        row["measured_mib"] = max(stats.rss_peak_mib or 0.0, rss_after)
        fill = stats.prompt_tokens + stats.completion_tokens
        row["plan_mib"] = session.plan.at_fill(fill).rss_bytes / MiB
        row["plan_total_mib"] = session.plan.at_fill(fill).ram_bytes / MiB
        # prefill ~500 tokens, then decode 128 with the end of turn ignored
        prefill, decode = [], []
        session.sampling = SamplingParams(temperature=0.0, max_tokens=128, ignore_eos=True, seed=1)
        long = filler(session, 480)
        for rep in range(reps):
            session.clear()
            # a first word of its own: the KV cache holds the last prompt, and a shared prefix would be
            # reused instead of read (the TTFT would then time a few tokens; prefill counts read ones)
            stats = reply(session, f"Log {rep + 1}. {long}")
            assert stats.cached_tokens < stats.prompt_tokens // 4, stats.cached_tokens  # the template only
            prefill.append(stats.prefill_tok_s or 0.0)
            decode.append(stats.decode_tok_s or 0.0)
            if between is not None:
                between(stats.prompt_tokens)
        row["prefill"], row["decode"] = statistics.median(prefill), statistics.median(decode)
        row["prompt_tokens"] = stats.prompt_tokens
        # five turns of equal new text: from turn 2 on only the new tokens are processed
        session.clear()
        session.sampling = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True, seed=1)
        turns = [reply(session, f"Question {n}. {TURN}") for n in range(1, 6)]
        row["ttft1_ms"], row["ttft5_ms"] = (turns[0].ttft_s or 0.0) * 1000, (turns[4].ttft_s or 0.0) * 1000
        row["new1"], row["new5"] = (t.prompt_tokens - t.cached_tokens for t in (turns[0], turns[4]))
    finally:
        session.close()
    return row


FLASH_ATTN = "off"  # what our load uses for an f16 KV cache (backends.llama_cpp.kv_params); the peers too


def llama_bench(exe: str, path: Path, threads: int, depth: int) -> tuple[float, float]:
    """One pp512 from an empty context, and one tg128 with `depth` tokens already in it: where our decode
    runs (after its ~500-token prompt)."""
    def run(*args: str) -> float:
        with quiet_stderr():
            out = subprocess.run([exe, "-m", str(path), "-t", str(threads), "-r", "1", "-o", "json",
                                  "-fa", "0" if FLASH_ATTN == "off" else "1", *args],
                                 capture_output=True, text=True, check=True)
        return float(json.loads(out.stdout)[0]["avg_ts"])

    return run("-p", "512", "-n", "0"), run("-p", "0", "-n", "128", "-d", str(depth))


class LlamaServer:
    """llama.cpp's server on loopback: its own timings of a ~500-token prompt and 128 tokens."""

    def __init__(self, exe: str, path: Path, threads: int) -> None:
        from tests.hubserver import free_port

        port = free_port()
        self.proc = subprocess.Popen([exe, "-m", str(path), "-t", str(threads), "-c", str(CTX), "--port", str(port),
                                      "--host", "127.0.0.1", "--no-webui", "--flash-attn", FLASH_ATTN],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            try:
                if json.load(urllib.request.urlopen(self.url + "/health", timeout=2)).get("status") == "ok":
                    return
            except (OSError, ValueError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise SystemExit(f"llama-server did not start ({self.proc.returncode})") from None
                time.sleep(0.5)

    def once(self, prompt: str) -> tuple[float, float]:
        body = json.dumps({"prompt": prompt, "n_predict": 128, "ignore_eos": True, "temperature": 0,
                           "cache_prompt": False}).encode()
        req = urllib.request.Request(self.url + "/completion", body, {"Content-Type": "application/json"})
        timings = json.load(urllib.request.urlopen(req, timeout=1800))["timings"]
        return timings["prompt_per_second"], timings["predicted_per_second"]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def per(row: dict, turn: int) -> float:
    """TTFT per token read at that turn (turn 1 also reads the template's default system prompt)."""
    return row[f"ttft{turn}_ms"] / max(1, row[f"new{turn}"])


def side_by_side(path: Path, args: argparse.Namespace) -> tuple[dict, list, list]:
    """Our row, with a run of each peer after each of our timed replies."""
    bench_runs: list[tuple[float, float]] = []
    server_runs: list[tuple[float, float]] = []
    server = LlamaServer(args.llama_server, path, args.threads) if args.llama_server else None

    def peers(depth: int) -> None:
        if args.llama_bench:
            bench_runs.append(llama_bench(args.llama_bench, path, args.threads, depth))
        if server is not None:
            server_runs.append(server.once(FILLER * 16))

    try:
        return ours(path, args.threads, args.reps, peers), bench_runs, server_runs
    finally:
        if server is not None:
            server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["135m", "llama-1b", "llama-3b", "llama-8b"])
    parser.add_argument("--llama-bench", help="llama.cpp's llama-bench binary (same llama.cpp as the binding)")
    parser.add_argument("--llama-server", help="llama.cpp's llama-server binary")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    gb_s = bandwidth.measured_bandwidth(refresh=True)
    print(f"CPU memory bandwidth {gb_s:.1f} GB/s (measured now), {args.threads} threads, ctx {CTX}\n")
    head = ("| model | file | load s | plan MiB | measured MiB | plan error | prefill tok/s | decode tok/s "
            "| est. (uncal.) | roofline | llama-bench pp512 / tg128 | llama-server pp / tg | TTFT turn 5 / 1 |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    worst = 0.0
    for shape in args.shapes:
        path = model_path(shape)
        r, bench_runs, server_runs = side_by_side(path, args)
        spec = ModelSpec.from_gguf(path)
        est = estimate.estimate_memory(spec, "gguf", spec.gguf_quant, CTX, calibrate=False)
        speed = estimate.estimate_speed(spec, est, gb_s, fill=r["prompt_tokens"] + 64, calibrate=False)
        error = 100 * (r["plan_mib"] - r["measured_mib"]) / r["measured_mib"]
        worst = max(worst, abs(error))
        bench = served = "-"
        if bench_runs:
            pp, tg = medians(bench_runs)
            bench = f"{pp:.1f} / {tg:.2f} (ours {r['prefill'] / pp:.2f} / {r['decode'] / tg:.2f})"
        if server_runs:
            pp, tg = medians(server_runs)
            served = f"{pp:.1f} / {tg:.2f} (ours {r['prefill'] / pp:.2f} / {r['decode'] / tg:.2f})"
        print(f"| {spec.name} | {os.path.getsize(path) / 1e6:,.0f} MB | {r['load_s']:.1f} | {r['plan_mib']:,.1f} "
              f"| {r['measured_mib']:,.1f} | {error:+.1f}% | {r['prefill']:.1f} | {r['decode']:.2f} "
              f"| {speed.tok_s:.2f} ({100 * (speed.tok_s - r['decode']) / r['decode']:+.0f}%) "
              f"| {100 * r['decode'] / speed.roofline_tok_s:.0f}% of {speed.roofline_tok_s:.1f} "
              f"| {bench} | {served} | {r['ttft5_ms']:.0f} ms ({r['new5']} new) / {r['ttft1_ms']:.0f} ms "
              f"({r['new1']} new): {per(r, 5) / per(r, 1):.2f}x per new token |", flush=True)
    print(f"\nworst plan error {worst:.1f}% (target 5%)")
    return 0 if worst <= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
