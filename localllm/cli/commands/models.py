"""`localllm models`: list the library (embedded, HF cache, added by path), add a file, remove one."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    p = sub.add_parser("models", help="list local models; `models add PATH`, `models rm ID`",
                       description="The library: the embedded model, models in the shared HF cache "
                                   "(GGUF files and transformers checkpoints) and files added by path.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
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
        rows.append((e.id, e.format, e.quant, human_size(e.size_bytes) if e.size_bytes else "-", e.source))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for row, entry in zip(rows, [None, *entries], strict=True):
        line = "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row))
        if entry is not None and not entry.usable:
            line += f"  [{entry.status}: {entry.detail}]"
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from localllm.hub.repos import human_size
    from localllm.models import library

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
    entries = library.list_models()
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
