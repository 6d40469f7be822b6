"""`localllm plan [MODEL]` (or `-m MODEL`): where a model would go on this machine (or a recorded one) and the memory each
part needs, itemized per device, before anything loads."""

from __future__ import annotations

import argparse
import json
import sys

from localllm.cli.commands import summary

MiB = 2**20


def register(sub) -> None:
    from localllm.cli.commands.recommend import PROFILES
    from localllm.cli.main import gpu_layers_arg, setting
    from localllm.config.defaults import KV_TYPES

    p = sub.add_parser("plan", help=summary(__name__))
    what = "'embedded' (the default), a GGUF file, a checkpoint folder, ollama:NAME[:TAG] or lmstudio:PUBLISHER/MODEL[/FILE]"
    p.add_argument("model_arg", nargs="?", metavar="MODEL", help=what)
    # -m as chat and bench take it; SUPPRESS leaves `localllm -m X plan`'s value alone
    p.add_argument("-m", "--model", default=argparse.SUPPRESS, metavar="MODEL", help="the same as MODEL")
    p.add_argument("--context", "--ctx", type=setting("context"), default=None, dest="context",
                   help="context size in tokens (default: the settings', else an Ollama model's num_ctx, "
                        "else 2048)")
    p.add_argument("--gpu-layers", type=gpu_layers_arg, default=None, metavar="auto|N",
                   help="auto (default), N, -1 for all, 0 for none")
    p.add_argument("--kv-type", "--kv", choices=KV_TYPES, default=None, dest="kv_type",
                   help="KV-cache type (GGUF; default: the settings' kv_type, f16)")
    p.add_argument("--load-in", choices=["none", "int8", "nf4", "fp4"], default="none",
                   help="transformers checkpoints: bitsandbytes quantization at load time")
    p.add_argument("--hw", metavar="FILE_OR_PROFILE",
                   help=f"plan for another machine: a `localllm hw --json` file or {', '.join(PROFILES)}")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


# What the table shows of each device's parts, in this order; the weights are listed once (mapped +
# repacked), the reclaimable pages apart from the total the fit is graded on.
SHOWN = {"weights": "weights", "weights_mapped": "weights, mapped file", "weights_repacked": "weights, repacked copy",
         "kv_cache": "kv cache", "compute_buffers": "compute buffers", "compute_reserved": "compute reserved",
         "runtime_overhead": "runtime overhead",
         "reclaimable_file_pages": "+ reclaimable file pages (not in total)",
         "rss_at_load": "rss at load", "rss_at_full_context": "rss at full context"}


def _table(plan) -> str:
    lines = [f"{plan.model} · {plan.format} {plan.quant} · ctx {plan.context} · KV {plan.kv_type}",
             f"placement  {plan.placement}"
             + (f" ({plan.gpu_layers if plan.gpu_layers >= 0 else 'all'}/{plan.layers} layers on "
                f"{plan.gpu_name or 'the GPU'})" if plan.gpu_layers else "")]
    for device, parts in plan.devices().items():
        budget = plan.ram_budget if device == "cpu" else plan.vram_budget
        lines.append(f"{device:<6} {'':>31} total {parts['total'] / MiB:9,.0f} MiB of {budget / MiB:,.0f} MiB free")
        for name, value in parts.items():
            if name.startswith("rss") and not plan.fits:
                continue  # what `ps` would show of a load that cannot happen here: no figure to trust
            if name in SHOWN and value and not (name == "weights" and "weights_mapped" in parts):
                lines.append(f"         {SHOWN[name]:<40} {value / MiB:9,.1f} MiB")
    lines += [f"note       {n}" for n in plan.notes]
    if not plan.fits:
        lines.append("does not fit; what would: " + ("; ".join(plan.alternatives) or "nothing smaller"))
    return "\n".join(lines)


def run(args) -> int:
    from localllm.cli.commands.recommend import _hardware
    from localllm.cli.run_options import settings_warned
    from localllm.config.settings import to_load_options
    from localllm.runtime import binding
    from localllm.runtime.plan import make_plan, plan_for

    given = {m for m in (args.model_arg, getattr(args, "model", None)) if m}
    if len(given) > 1:
        print(f"error: two models given ({' and '.join(sorted(given))}): plan one at a time", file=sys.stderr)
        return 2
    model = given.pop() if given else "embedded"
    settings = settings_warned()
    options = to_load_options(settings)
    if args.context:
        options.context = args.context
    if args.gpu_layers is not None:
        options.gpu_layers = args.gpu_layers
    options.quantization = args.load_in
    from localllm.models.ref import ModelRef
    from localllm.models.sampling_defaults import SamplingRequest, context_for, resolve_sampling

    path = ModelRef.parse(model).path
    # the sampling a chat with it would use, each value with its source (flags aside), and its context
    request = SamplingRequest(settings=settings, ctx_given=bool(args.context))
    sampling = resolve_sampling(model, request)
    options.context, ctx_from = context_for(options.context, sampling, request)
    if args.hw:  # another machine: its GPUs count as usable; its CPU flags decide what is repacked
        extra = binding.extra_bufts_for(options.extra_buffers)[0] if options.extra_buffers != "auto" else True
        plan = make_plan(path, options, _hardware(args.hw), offload=True, extra_bufts=extra,
                         kv_type=args.kv_type or options.kv_type)
        plan.notes.append(f"planned for {args.hw}, assuming a llama.cpp build with GPU offload")
    else:
        plan = plan_for(path, options, kv_type=args.kv_type)
    if args.json:
        print(json.dumps({**plan.to_dict(), "context_from": ctx_from, "sampling": sampling.to_dict()}, indent=2))
    else:
        print(_table(plan) + f"\nsampling   {sampling.line()}")
    return 0 if plan.fits else 1
