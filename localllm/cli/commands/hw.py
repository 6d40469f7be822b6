"""`localllm hw`: what this machine has for running models, as a card or JSON."""

from __future__ import annotations

import json

from localllm.cli.commands import summary


def register(sub) -> None:
    p = sub.add_parser("hw", help=summary(__name__))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--bandwidth", action="store_true",
                   help="measure the CPU memory bandwidth now (~1 s) instead of using the cached figure")
    p.set_defaults(func=run)


def card(info) -> str:
    """A plain-text card; every line starts with its label so it reads well in any terminal."""
    from localllm.machine.hardware import card_rows

    return "\n".join(f"{label:<8} {value}".rstrip() if label else f"{'':<8} {value}"
                     for label, value in card_rows(info, "localllm hw --bandwidth"))


def run(args) -> int:
    from localllm.machine import bandwidth, hardware

    info = hardware.probe(measure_bandwidth=args.bandwidth)
    if info.cpu_bandwidth_gb_s is None:  # first run on this machine: measure once, cached afterwards
        info.cpu_bandwidth_gb_s = round(bandwidth.measured_bandwidth(cpu=info.cpu), 2)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print(card(info))
    return 0
