"""CLI subcommands beyond chat/tui, one module each: `register(subparsers)` adds its parser and
sets `func=run`. Modules import nothing heavy at import time (`localllm --help` loads them all)."""

# Order is the order in `localllm --help`.
MODULES: tuple[str, ...] = (
    "localllm.commands.hw",
    "localllm.commands.recommend",
    "localllm.commands.plan",
    "localllm.commands.pull",
    "localllm.commands.models",
    "localllm.commands.bench",
    "localllm.commands.quantize",
    "localllm.commands.doctor",
)


def command_name(module: str) -> str:
    """localllm.commands.hw -> hw: the module's last part is its subcommand's name."""
    return module.rsplit(".", 1)[1]
