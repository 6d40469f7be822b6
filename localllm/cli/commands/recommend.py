"""`localllm recommend`: which model, format and quant fit this machine, how fast, and why."""

from __future__ import annotations

import json
import sys

from localllm.cli.commands import summary

GiB = 1024**3
VERDICT = {"full GPU": "GPU", "partial offload": "split", "CPU only": "CPU", "does not fit": "no"}


def register(sub) -> None:
    p = sub.add_parser("recommend", help=summary(__name__))
    p.add_argument("--context", type=int, default=8192, help="context length you want (default 8192)")
    p.add_argument("--use", choices=("chat", "quality", "speed"), default="chat",
                   help="chat: good and readable speed; quality: best that runs; speed: fastest")
    p.add_argument("--kv-type", "--kv", choices=("f16", "q8_0", "q4_0"), default="f16", dest="kv_type", help="KV-cache type (GGUF)")
    p.add_argument("--format", action="append", dest="formats", metavar="FORMAT",
                   choices=("gguf", "gptq", "bnb-nf4", "bnb-int8", "fp16"),
                   help="only these formats (repeatable)")
    p.add_argument("--model", metavar="PATH_OR_REPO",
                   help="evaluate one model: a .gguf file, a config.json, or a Hub repo id")
    p.add_argument("-n", "--top", type=int, default=10, help="how many picks to show (default 10)")
    p.add_argument("--all-quants", action="store_true", help="show every quant of a model, not two")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-disk", action="store_true",
                   help="do not look for the picks among the models already on this disk (Ollama, LM Studio, "
                        "the HF cache ...)")
    p.add_argument("--hw", metavar="FILE_OR_PROFILE",
                   help="plan for another machine: a `localllm hw --json` file, or a recorded profile "
                        f"({', '.join(PROFILES)})")
    p.set_defaults(func=run)


PROFILES = ("cpu-16gb", "gpu-8gb", "gpu-24gb")  # localllm/data/machines/*.json


def _hardware(source: str | None):
    """This machine, probed; or a recorded one (a path or a shipped profile name)."""
    from pathlib import Path

    from localllm.config import PACKAGE_DATA
    from localllm.errors import LocalLLMError
    from localllm.machine import hardware

    if not source:
        info = hardware.probe()
        if info.cpu_bandwidth_gb_s is None:  # speed estimates need it: measure once (~1 s), cached after
            from localllm.machine import bandwidth

            info.cpu_bandwidth_gb_s = round(bandwidth.measured_bandwidth(cpu=info.cpu), 2)
        return info
    path = Path(source).expanduser()
    if source in PROFILES:
        path = PACKAGE_DATA / "machines" / f"{source}.json"
    try:
        return hardware.HardwareInfo.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LocalLLMError(f"Cannot use {source} as a machine: {exc}. Give a file written by "
                            f"`localllm hw --json` or one of {', '.join(PROFILES)}.") from None


def _specs(model: str | None):
    from pathlib import Path

    from localllm.models import catalog

    if not model:
        return catalog.load_catalog()
    path = Path(model).expanduser()
    if path.suffix == ".gguf" or (path.exists() and path.is_file() and path.suffix != ".json"):
        return (catalog.ModelSpec.from_gguf(path),)
    if path.suffix == ".json" and path.exists():
        try:
            config = json.loads(path.read_text())
        except ValueError as exc:
            raise catalog.CatalogError(f"{path} is not valid JSON ({exc})") from None
        return (catalog.ModelSpec.from_config(config, path.parent.name),)
    try:
        return (catalog.get(model),)
    except catalog.CatalogError:
        return (catalog.spec_from_hub(model),)


def table(rec, top: int, per_model: int | None) -> str:
    lines = [f"{'#':>2} {'model':28} {'format':8} {'quant':9} {'where':5} {'RAM':>6} {'VRAM':>6} "
             f"{'tok/s':>6} {'bits':>5} {'max ctx f16/q8/q4':>19}"]
    below = rec.on_disk_below(top, per_model)
    for i, p in enumerate(rec.top(top, per_model) + below, 1):
        if below and p is below[0]:
            lines.append("   -- already on this disk, further down the ranking --")
        ctx = "/".join(_k(p.max_context.get(kv)) for kv in ("f16", "q8_0", "q4_0")) if p.max_context else ""
        lines.append(f"{i:2d} {p.name[:28]:28} {p.format:8} {p.quant[:9]:9} {VERDICT[p.verdict]:5} "
                     f"{p.ram_bytes / GiB:5.1f}G {p.vram_bytes / GiB:5.1f}G {p.tok_s:6.1f} {p.bits:5.2f} "
                     f"{ctx:>19}")
        lines.append(f"   {p.why}")
        if p.on_disk and p.ref:
            lines.append(f"   have: {p.ref} (`localllm chat -m {p.ref}`)")
        elif p.source:
            lines.append(f"   get: {p.source}" + (f" ({p.download_bytes / 1e9:.1f} GB)" if p.download_bytes else ""))
    return "\n".join(lines)


def _k(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


# what each --use ranks by, as the head of the report says it
RANKED_FOR = {"chat": "chat (good quality at a readable speed)", "quality": "quality (the best that runs)",
              "speed": "speed (the fastest)"}


def report(rec, top: int, per_model: int | None) -> str:
    w = rec.wishes
    head = (f"For {w.context:,} tokens of context, ranked for {RANKED_FOR.get(w.use, w.use)}. "
            f"Budget: {rec.ram_budget / GiB:.1f} GiB RAM"
            + (f", {rec.vram_budget / GiB:.1f} GiB VRAM on {rec.gpu}" if rec.gpu else "")
            + f" (free memory less {w.margin:.0%}).")
    out = [head]
    out += [f"note: {n}" for n in rec.notes]
    if rec.picks:
        out += ["", table(rec, top, per_model), "", "Best of each format:"]
        for fmt, p in rec.best_per_format().items():
            out.append(f"  {fmt:8} {p.name[:30]:30} {p.quant[:9]:9} {VERDICT[p.verdict]:5} "
                       f"{(p.ram_bytes + p.vram_bytes) / GiB:5.1f}G {p.tok_s:6.1f} tok/s  {p.quality_hint}")
    else:
        out += ["", "Nothing fits. What would:"]
        for fix in rec.fixes:
            out.append(f"- {fix.what}")
            out.append(f"  {fix.pick.verdict}: {fix.pick.why}")
    return "\n".join(out)


def run(args) -> int:
    from localllm.machine.recommend import Wishes, recommend

    if args.context < 1:
        print("error: --context must be at least 1 token", file=sys.stderr)
        return 2
    info = _hardware(args.hw)
    wishes = Wishes(context=args.context, use=args.use, kv_type=args.kv_type,
                    formats=tuple(args.formats) if args.formats else Wishes.formats)
    specs = _specs(args.model)
    too_short = [s for s in specs if s.max_context < args.context]
    if args.model and too_short:
        print(f"error: {too_short[0].name} holds at most {too_short[0].max_context} tokens of context; "
              f"ask for --context {too_short[0].max_context} or less", file=sys.stderr)
        return 2
    on_disk = {}
    if not (args.hw or args.no_disk):  # another machine's plan: this disk says nothing about it
        from localllm.models.on_disk import find_on_disk

        notes: list[str] = []
        on_disk = find_on_disk(specs, notes)
        for note in notes:
            print(f"[notice] {note}", file=sys.stderr)
    rec = recommend(info, specs, wishes, on_disk=on_disk)
    per_model = None if args.all_quants or args.model else 2
    if args.json:
        print(json.dumps(rec.to_dict(args.top, per_model), indent=2))
    else:
        print(report(rec, args.top, per_model))
    return 0
