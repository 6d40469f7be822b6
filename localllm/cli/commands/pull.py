"""`localllm pull REPO`: one GGUF quant or a whole checkpoint into the HF cache; progress on stderr,
the model's path on stdout; Ctrl-C stops cleanly and a rerun resumes."""

from __future__ import annotations

import argparse
import sys

from localllm.cli.commands import summary


def register(sub) -> None:
    p = sub.add_parser("pull", help=summary(__name__),
                       description="Download one GGUF quant, or the files a transformers checkpoint needs "
                                   "(config, tokenizer, safetensors weights), into the standard HF cache "
                                   "(HF_HOME / HF_HUB_CACHE), shared with transformers and the hf CLI. "
                                   "An interrupted download resumes on the next run. Gated repos need a "
                                   "token: HF_TOKEN, or `hf auth login`.")
    p.add_argument("repo", metavar="REPO", help="the Hub repo id, e.g. bartowski/SmolLM2-135M-Instruct-GGUF")
    p.add_argument("-q", "--quant", help="GGUF quant to fetch, e.g. Q4_K_M (default: Q4_K_M when there "
                                         "are several)")
    p.add_argument("-f", "--file", help="fetch this file of the repo (all parts of a split GGUF)")
    p.add_argument("-r", "--revision", help="branch, tag or commit (default: main)")
    p.add_argument("--list", action="store_true", help="list the repo's files and quants, download nothing")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept pickle .bin weights when a repo has no safetensors (they can run code)")
    p.set_defaults(func=run)


class PullProgress:
    """The download's Progress events as one bar (cli/progress.py)."""

    def __init__(self, stream=None) -> None:
        from localllm.cli.progress import ProgressBar

        self.bar = ProgressBar(unit="bytes", stream=stream)

    def __call__(self, p) -> None:
        from localllm.hub.download import human_duration
        from localllm.hub.repos import human_size

        name = p.filename if len(p.filename) <= 40 else "…" + p.filename[-39:]
        label = f"[{p.file_index}/{p.file_count}] {name}"
        note = {"checking": "checking the partial file", "cached": "already downloaded"}.get(p.phase, "")
        parts = [label, f"{human_size(p.done)} / {human_size(p.total)}", f"{p.fraction:4.0%}"]
        if note:
            parts.append(note)
        elif p.phase != "done":
            parts.append(f"{human_size(p.rate)}/s" if p.rate else "-- B/s")
            parts.append(f"ETA {human_duration(p.eta_s)}" if p.eta_s is not None else "ETA --")
        final = p.phase in ("done", "cached") or p.file_done == p.file_total
        self.bar.update(p.done, p.total, label, note, final=final, plain="  ".join(parts))

    def end(self) -> None:
        self.bar.close()


def print_listing(listing, out=None) -> None:
    from localllm.hub.repos import available_quants, human_size

    out = out or sys.stdout
    out.write(f"{listing.repo_id} @ {listing.commit[:12]} ({listing.revision})\n")
    for f in listing.files:
        size = human_size(f.size) if f.size is not None else "?"
        out.write(f"  {size:>10}  {f.path}{'  [' + f.quant + ']' if f.quant else ''}\n")
    quants = available_quants(listing)
    if quants:
        out.write("GGUF quants: " + ", ".join(f"{q} ({human_size(s)})" for q, s in quants.items()) + "\n")


def run(args: argparse.Namespace) -> int:
    from localllm.hub.download import DownloadJob, human_duration
    from localllm.hub.repos import HubConfig, human_size, list_repo, select_files
    from localllm.hub.transfer import DownloadCancelled

    cfg = HubConfig.from_env()
    listing = list_repo(args.repo, args.revision, cfg)
    if args.list:
        print_listing(listing)
        return 0
    selection = select_files(listing, quant=args.quant, filename=args.file, allow_pickle=args.allow_pickle)
    names = ", ".join(f.path for f in selection.files[:4]) + (" …" if len(selection.files) > 4 else "")
    print(f"Pulling {listing.repo_id} @ {listing.commit[:12]}: {len(selection.files)} file(s), "
          f"{human_size(selection.total_size)} ({names})", file=sys.stderr)
    if selection.note:
        print(f"  {selection.note}", file=sys.stderr)
    line = PullProgress()
    try:
        result = DownloadJob(listing, selection, cfg, progress=line).run()
    except DownloadCancelled as exc:
        line.end()
        print(exc, file=sys.stderr)
        return 130
    finally:
        line.end()
    summary = f"Done in {human_duration(result.seconds)}: {human_size(result.downloaded)} downloaded"
    if result.resumed:
        summary += f", {human_size(result.resumed)} reused from an earlier interrupted run"
    if result.cached:
        summary += f", {result.cached} file(s) were already in the cache"
    print(summary + ". `localllm models` lists it.", file=sys.stderr)
    print(result.model_path)
    return 0
