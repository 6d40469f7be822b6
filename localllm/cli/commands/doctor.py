"""`localllm doctor`: check the whole install, one line per check with what to do (--json for scripts)."""

from __future__ import annotations

import json

from localllm.cli.commands import summary


def register(sub) -> None:
    p = sub.add_parser("doctor", help=summary(__name__))
    p.add_argument("--json", action="store_true", help='print {"checks": [...], "ok": bool}')
    p.add_argument("--refresh", action="store_true",
                   help="probe the llama.cpp binding again instead of using the cached answer (~1-2 s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from localllm.runtime.doctor import run_checks

    checks = run_checks(refresh=args.refresh)
    ok = not any(c.status == "fail" for c in checks)
    if args.json:
        print(json.dumps({"checks": [c.to_dict() for c in checks], "ok": ok}, indent=2))
    else:
        width = max(len(c.name) for c in checks) + 2
        for c in checks:
            print(f"{c.status:<6}{c.name:<{width}}{c.summary}")
            if c.fix:
                print(f"{'':6}-> {c.fix}")
    return 0 if ok else 1
