"""Decode speed of localllm's chat path against a bare llama-cpp-python loop, side by side.

Interleaves repetitions of (1) a bare `Llama.generate()` loop in this process and (2) localllm's
session path (worker process + pipe + meter), or (3) the same inside the running TUI (headless
pilot), on the same model, prompt, sampling, seed and threads, always generating exactly --tokens
tokens. Prints decode tok/s (mean ± stddev) and the ratio of means.

    python benchmarks/decode_ratio.py --mode session      # target >= 0.98
    python benchmarks/decode_ratio.py --mode tui          # target >= 0.95
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quiet import decode_args  # noqa: E402

from localllm.config import LoadOptions, SamplingParams  # noqa: E402
from localllm.models.embedded import embedded_model_path
from localllm.runtime.metrics import decode_rate

PROMPT = "Write a short story about a lighthouse keeper and a storm."
SYSTEM = "You are a helpful assistant."


def sampling(tokens: int, seed: int) -> SamplingParams:
    return SamplingParams(max_tokens=tokens, ignore_eos=True, seed=seed)


class Bare:
    """The lean loop: render the template once, then Llama.generate() token by token."""

    def __init__(self, path: str, threads: int, n_ctx: int) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from localllm.backends.llama_cpp import open_llama
        from localllm.runtime import binding

        # llama.cpp's extra CPU buffers as the app's worker has them here (auto: off where they died of
        # SIGILL, as on some AMX Xeons): a loop that would die is no baseline, nor one with other kernels
        self.extra_bufts, why = binding.extra_bufts_for("auto")
        print(f"bare loop and app: extra CPU buffers {why}", flush=True)
        self.llm = open_llama(path, self.extra_bufts, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                              verbose=False)
        m = self.llm._model
        fmt = Jinja2ChatFormatter(self.llm.metadata["tokenizer.chat_template"],
                                  m.token_get_text(self.llm.token_eos()),
                                  m.token_get_text(self.llm.token_bos()))
        prompt = fmt(messages=[{"role": "system", "content": SYSTEM},
                               {"role": "user", "content": PROMPT}]).prompt
        self.tokens = self.llm.tokenize(prompt.encode(), add_bos=False, special=True)

    def run(self, n: int, s: SamplingParams) -> float:
        self.llm.set_seed(s.seed)
        times = []
        for _ in self.llm.generate(self.tokens, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p,
                                   temp=s.temperature, repeat_penalty=s.repeat_penalty, reset=True):
            times.append(time.perf_counter())
            if len(times) >= n:
                break
        return decode_rate(times) or 0.0


def run_session(args, bare: Bare, path: str) -> tuple[list[float], list[float]]:
    from localllm.chat.session import ChatSession, ReplyDone

    session = ChatSession(system_prompt=SYSTEM, sampling=sampling(args.tokens, args.seed))
    session.load(path, LoadOptions(context=args.ctx, threads=args.threads))
    ours, base = [], []
    try:
        for rep in range(args.warmup + args.reps):
            b = bare.run(args.tokens, sampling(args.tokens, args.seed))
            session.clear()
            stats = next(e.stats for e in session.send(PROMPT) if isinstance(e, ReplyDone))
            assert stats.completion_tokens == args.tokens, stats
            if rep >= args.warmup:
                base.append(b)
                ours.append(stats.decode_tok_s or 0.0)
    finally:
        session.close()
    return base, ours


def run_tui(args, bare: Bare, path: str) -> tuple[list[float], list[float]]:
    from textual.widgets import Input

    from localllm.ui.app import LocalLLMApp

    async def main() -> tuple[list[float], list[float]]:
        app = LocalLLMApp(model_path=path, load_options=LoadOptions(context=args.ctx, threads=args.threads),
                          sampling=sampling(args.tokens, args.seed), system_prompt=SYSTEM)
        ours, base = [], []
        async with app.run_test(size=(120, 40)) as pilot:
            while app.session.model is None:
                await pilot.pause(0.1)
            for rep in range(args.warmup + args.reps):
                b = bare.run(args.tokens, sampling(args.tokens, args.seed))
                await app.action_new_chat()
                prompt = app.query_one("#prompt", Input)
                prompt.value = PROMPT
                await pilot.press("enter")
                await pilot.pause(0.2)
                while app.generating:  # a plain sleep: pilot.pause() would add repaints of its own
                    await asyncio.sleep(0.2)
                stats = app.session.history[-1].stats
                assert stats is not None and stats.completion_tokens == args.tokens, stats
                if rep >= args.warmup:
                    base.append(b)
                    ours.append(stats.decode_tok_s or 0.0)
            print(f"(TUI repaint interval settled at {app.chat.pacer.interval:.2f} s)")
        return base, ours

    return asyncio.run(main())


def summary(name: str, values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{name:<28}{statistics.mean(values):8.1f} ± {sd:4.1f} tok/s  (n={len(values)})"


def main() -> int:
    parser = decode_args(__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["session", "tui", "both"], default="both")
    parser.add_argument("--model", default=None, help="a GGUF file (default: the embedded model)")
    args = parser.parse_args()
    path = args.model or str(embedded_model_path())
    print(f"model {os.path.basename(path)} · {args.tokens} tokens · {args.threads} threads · "
          f"{args.reps} reps after {args.warmup} warm-up · seed {args.seed}")
    bare = Bare(path, args.threads, args.ctx)
    modes = ["session", "tui"] if args.mode == "both" else [args.mode]
    targets = {"session": 0.98, "tui": 0.95}
    ok = True
    for mode in modes:
        base, ours = (run_session if mode == "session" else run_tui)(args, bare, path)
        ratio = statistics.mean(ours) / statistics.mean(base)
        print(summary("bare Llama.generate()", base))
        print(summary(f"localllm {mode} path", ours))
        print(f"ratio {mode}/bare: {ratio:.3f} (target >= {targets[mode]:.2f}) "
              f"{'OK' if ratio >= targets[mode] else 'BELOW TARGET'}")
        ok = ok and ratio >= targets[mode]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
