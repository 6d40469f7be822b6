"""Command line: `localllm` starts the TUI; `localllm chat` works without it.
Heavy modules are imported inside the commands so --help stays instant."""

from __future__ import annotations

import argparse
import sys

from localllm import __version__
from localllm.cli.run_options import endpoint_of, run_options, settings_warned


def _model_args(p: argparse.ArgumentParser) -> None:
    from localllm.config import defaults as d  # plain values: the dataclasses cost start-up time

    p.add_argument("-m", "--model", metavar="PATH",
                   help="a GGUF file, a transformers checkpoint folder, ollama:NAME[:TAG] or "
                        "lmstudio:PUBLISHER/MODEL[/FILE] (read in place; default: the embedded "
                        "SmolLM2-135M); with --endpoint, the model id on the server")
    p.add_argument("--endpoint", metavar="URL", default=None,
                   help="an OpenAI-compatible server (llama-server, vLLM, Ollama, LM Studio); "
                        "env: LOCALLLM_ENDPOINT")
    p.add_argument("--api-key-env", metavar="NAME", default=None,
                   help="environment variable holding the server's API key (settings: api_key_env; "
                        "default LOCALLLM_API_KEY)")
    p.add_argument("--context", "--ctx", type=setting("context"), default=None, dest="context",
                   help=f"context size in tokens (settings: context; default: the settings', else an Ollama "
                        f"model's num_ctx, else {d.CONTEXT})")
    p.add_argument("--threads", type=setting("threads"), default=None, help="CPU threads (default: physical cores)")
    p.add_argument("--gpu-layers", type=gpu_layers_arg, default=None, metavar="auto|N",
                   help="layers to offload to the GPU: auto (the load plan places them; the default), "
                        "N, -1 for all, 0 for none")
    p.add_argument("--kv-type", "--kv", choices=d.KV_TYPES, default=None, dest="kv_type",
                   help=f"llama.cpp KV-cache type (settings: kv_type; default {d.KV_TYPE}); "
                        "q8_0 and q4_0 turn flash attention on")
    p.add_argument("--force", action="store_true", default=None,
                   help="load even when the load plan says the model does not fit")
    p.add_argument("--load-in", choices=["none", "int8", "nf4", "fp4"], default="none",
                   help="transformers checkpoints: bitsandbytes quantization at load time")
    p.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default="auto",
                   help="transformers checkpoints: weight dtype")
    p.add_argument("--system-prompt", "--system", default=None, dest="system_prompt", help="system prompt")
    p.add_argument("--max-tokens", type=setting("max_tokens"), default=None, help=f"longest reply in tokens (default {d.MAX_TOKENS})")
    p.add_argument("--temperature", "--temp", type=setting("temperature"), default=None, dest="temperature",
                   help=f"sampling temperature (0: greedy; default: the model's own, else {d.TEMPERATURE}); "
                        "this and the flags below win over the model's defaults and the settings")
    p.add_argument("--top-p", type=setting("top_p"), default=None, help=f"default: the model's own, else {d.TOP_P}")
    p.add_argument("--top-k", type=setting("top_k"), default=None, help=f"default: the model's own, else {d.TOP_K}")
    p.add_argument("--min-p", type=setting("min_p"), default=None, help=f"default: the model's own, else {d.MIN_P}")
    p.add_argument("--repeat-penalty", type=setting("repeat_penalty"), default=None,
                   help=f"default: the model's own, else {d.REPEAT_PENALTY}")
    p.add_argument("--seed", type=setting("seed"), default=None, metavar="N|random",
                   help="sampling seed for repeatable replies (random: a new one each reply)")


def setting(name: str):
    """An argparse type for a flag that is also a setting: the settings' own parse and range
    (config.settings), so a flag takes what settings.toml takes (`--top-p 3` and `--max-tokens 0` ran
    without a word) and is refused before anything loads."""

    def parse(text: str):
        from localllm.config import settings

        try:
            return settings.parse_field(name, text)
        except settings.SettingsError:
            raise argparse.ArgumentTypeError(f"must be {settings.allowed(name)} (got {text!r})") from None

    parse.__name__ = name
    return parse


def gpu_layers_arg(text: str) -> int:
    """`auto` or an integer >= -1, for --gpu-layers."""
    from localllm.config.defaults import AUTO_LAYERS

    if text.strip().lower() == "auto":
        return AUTO_LAYERS
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number of layers, got {text!r}") from None
    if value < -1:
        raise argparse.ArgumentTypeError("use auto, -1 (all layers), 0 (none) or a number of layers")
    return value


def _wanted_module(argv: list[str]) -> str | None:
    """The one command module `argv` runs, so only its parser is built (`localllm hw` starts in ~3x a
    bare `python -c pass`); None: build them all (help, chat, the TUI)."""
    from localllm.cli.commands import MODULES, command_name

    names = {command_name(m): m for m in MODULES}
    for token in argv:
        if token in names:
            return names[token]
        if token in ("chat", "tui"):
            return None
    return None


def build_parser(only: str | None = None, summaries_only: bool = False) -> argparse.ArgumentParser:
    """The parser: every command's in full, or only `only`'s. With summaries_only, the other commands are
    listed by their one-line help without importing their modules (`localllm --help`, chat, the TUI)."""
    parser = argparse.ArgumentParser(
        prog="localllm",
        allow_abbrev=False,  # else a subcommand option like --top clashes with --top-p here
        description="Run local quantized LLMs in the terminal, with live run metrics. "
                    "With no command, starts the TUI chatting with the embedded model.",
    )
    parser.add_argument("--version", action="version", version=f"localllm {__version__}")
    _model_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chat = sub.add_parser("chat", help="chat without the TUI: one-shot with -p, else a plain REPL")
    if only is None:  # another command runs: chat's own flags would only cost start-up (~2 ms of `hw`)
        _chat_args(chat)
    sub.add_parser("tui", help="start the TUI (the default)").set_defaults(command="tui")
    import importlib

    from localllm.cli.commands import MODULES, SUMMARIES, command_name

    for name in (only,) if only else MODULES:
        if summaries_only and not only:
            sub.add_parser(command_name(name), help=SUMMARIES[command_name(name)])
        else:
            importlib.import_module(name).register(sub)
    return parser


def _chat_args(chat: argparse.ArgumentParser) -> None:
    _model_args(chat)
    chat.add_argument("-p", "--prompt", action="append", default=None,
                      help="send a message, print the reply and its stats; repeat -p for successive turns "
                           "of one conversation (each reuses the KV cache of the ones before); -p - reads "
                           "the message from standard input")
    chat.add_argument("--json", action="store_true", help="print one JSON record: reply and every number")
    chat.add_argument("--quiet", action="store_true", help="print the reply only, no stats")


def cmd_tui(args) -> int:
    from localllm.ui.app import LocalLLMApp

    settings = settings_warned()
    load, request = run_options(args, settings)
    app = LocalLLMApp(model_path=endpoint_of(args) or args.model, load_options=load, sampling_request=request,
                      system_prompt=args.system_prompt, settings=settings)
    app.run()
    return app.return_code or 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wanted = _wanted_module(argv)  # None: no command module runs, so none is imported
    args = build_parser(wanted, summaries_only=wanted is None).parse_args(argv)
    from localllm.errors import LocalLLMError

    try:
        if getattr(args, "func", None) is not None:
            return int(args.func(args) or 0)
        if args.command == "chat":
            from localllm.cli.chat_command import cmd_chat

            return cmd_chat(args)
        return cmd_tui(args)
    except LocalLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
