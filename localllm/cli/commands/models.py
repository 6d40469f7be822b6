"""`localllm models`: list the library (embedded, HF cache, added by path, Ollama's and LM Studio's
stores, llama.cpp's, GPT4All's and Jan's folders, the settings' model folders), add a file, remove one,
report duplicates."""

from __future__ import annotations

import argparse
import json
import sys

from localllm.cli.commands import summary


def register(sub) -> None:
    p = sub.add_parser("models", help=summary(__name__),
                       description="The library: the embedded model, models in the shared HF cache "
                                   "(GGUF files and transformers checkpoints), files added by path, and the "
                                   "GGUFs in Ollama's and LM Studio's stores, llama.cpp's old cache, GPT4All's and Jan's "
                                   "model folders and the settings' model_folders "
                                   "(read in place, never changed). One entry per file, with every place it "
                                   "is found.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--dupes", action="store_true",
                   help="report models kept more than once (in several stores) and the space the copies take")
    action = p.add_subparsers(dest="models_action", metavar="ACTION")
    add = action.add_parser("add", help="add a GGUF file (or checkpoint folder) by path; it stays where it is")
    add.add_argument("path", metavar="PATH")
    rm = action.add_parser("rm", help="remove a model: cache entries are deleted, added paths forgotten")
    rm.add_argument("id", metavar="ID", help="the id shown by `localllm models`")
    rm.add_argument("--delete-file", action="store_true",
                    help="for a model added by path: also delete the file from disk")
    p.set_defaults(func=run)


def render_table(entries) -> str:
    from localllm.hub.repos import human_size

    rows = [("ID", "FORMAT", "QUANT", "SIZE", "SOURCE")]
    for e in entries:
        rows.append((e.id, e.format, e.quant, human_size(e.size_bytes) if e.size_bytes else "-", _sources(e)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for row, entry in zip(rows, [None, *entries], strict=True):
        line = "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row))
        if entry is not None and not entry.usable:
            line += f"  [{entry.status}: {entry.detail}]"
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


def _sources(entry) -> str:
    """hf-cache, or `ollama smollm2:135m + lmstudio` when the file is found in several places; "(serving)"
    when Ollama or LM Studio has it loaded now."""
    text = entry.source if len(entry.sources) < 2 else \
        " + ".join(s.tool if s.ref == entry.id else f"{s.tool} {s.name}" for s in entry.sources)
    return text + (" (serving)" if entry.serving else "")


def render_dupes(dupes) -> str:
    from localllm.hub.repos import human_size

    if not dupes:
        return "No model is kept more than once.\n"
    lines = []
    for d in dupes:
        lines.append(f"{d.entry.id} ({human_size(d.entry.size_bytes)}): {d.copies} "
                     f"cop{'y' if d.copies == 1 else 'ies'} on disk, {human_size(d.wasted_bytes)} in extra copies")
        lines += [f"  {s.tool:9} {s.name}  {s.path}" for s in d.entry.sources]
    total = sum(d.wasted_bytes for d in dupes)
    lines.append(f"Space in extra copies: {human_size(total)} (hard links and symlinks to one file count once).")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from localllm.hub.repos import human_size
    from localllm.models import library, library_merge

    if args.models_action == "add":
        entry, added = library.add_path(args.path)
        verb = "Added" if added else "Already in the library:"
        print(f"{verb} {entry.id} ({entry.format} {entry.quant}, {human_size(entry.size_bytes)})")
        return 0
    if args.models_action == "rm":
        removed = library.remove(args.id, delete_file=args.delete_file)
        if removed.action == "forgotten":
            print(f"Forgot {removed.entry.id}; the file is still on disk (--delete-file deletes it).")
        else:
            print(f"Deleted {removed.entry.id}, freed {human_size(removed.freed_bytes)}.")
        return 0
    notes: list[str] = []
    entries = library.list_models(notes=notes, serving=not args.dupes)
    for note in notes:  # a store that cannot be read: the rest are still listed
        print(f"[notice] {note}", file=sys.stderr)
    if args.dupes:
        dupes = library_merge.duplicates(entries)
        if args.json:
            print(json.dumps([{**d.entry.to_dict(), "copies": d.copies, "wasted_bytes": d.wasted_bytes}
                              for d in dupes], indent=2))
        else:
            sys.stdout.write(render_dupes(dupes))
        return 0
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    sys.stdout.write(render_table(entries))
    partial = library.partial_downloads()
    if partial:
        repos = [repo for repo, _ in partial]
        print(f"Interrupted downloads ({human_size(sum(n for _, n in partial))}) in the HF cache: rerun "
              f"`localllm pull` for {', '.join(repos)} to finish, or `localllm models rm REPO` to drop them.",
              file=sys.stderr)
    return 0
