"""CLI subcommands beyond chat/tui, one module each: `register(subparsers)` adds its parser and
sets `func=run`. Modules import nothing heavy at import time (`localllm --help` loads them all)."""

# Order is the order in `localllm --help`.
MODULES: tuple[str, ...] = (
    "localllm.cli.commands.hw",
    "localllm.cli.commands.recommend",
    "localllm.cli.commands.plan",
    "localllm.cli.commands.pull",
    "localllm.cli.commands.models",
    "localllm.cli.commands.bench",
    "localllm.cli.commands.quantize",
    "localllm.cli.commands.serve",
    "localllm.cli.commands.doctor",
)


def command_name(module: str) -> str:
    """localllm.cli.commands.hw -> hw: the module's last part is its subcommand's name."""
    return module.rsplit(".", 1)[1]
