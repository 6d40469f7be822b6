"""CLI subcommands beyond chat/tui, one module each: `register(subparsers)` adds its parser and
sets `func=run`. Modules import nothing heavy at import time (`localllm --help` loads them all)."""

# Order is the order in `localllm --help`. Each command's one-line help is here, not in its module, so that
# `localllm --help` and the TUI's start list the commands without importing their modules.
SUMMARIES: dict[str, str] = {
    "hw": "show this machine's CPU, memory, disk and GPUs (--json for scripts)",
    "recommend": "rank models and quantizations that fit this machine",
    "plan": "show where a model would load and what memory it needs (--json)",
    "pull": "download a model from the Hugging Face Hub into the shared HF cache",
    "models": "list local models; `models add PATH`, `models rm ID`",
    "bench": "time models side by side (load, TTFT, tok/s, CPU, memory)",
    "quantize": "make a GGUF quant, a full-precision checkpoint or a GPTQ model on this machine",
    "serve": "serve a GGUF over the OpenAI API (llama-cpp-python's server) with this machine's safe CPU kernels",
    "doctor": "check the install: binding, GPU, torch, model, disk, settings",
}
MODULES: tuple[str, ...] = tuple(f"localllm.cli.commands.{name}" for name in SUMMARIES)


def command_name(module: str) -> str:
    """localllm.cli.commands.hw -> hw: the module's last part is its subcommand's name."""
    return module.rsplit(".", 1)[1]


def summary(module: str) -> str:
    """The one-line help of the command that `module` (its __name__) implements."""
    return SUMMARIES[command_name(module)]
