"""Command line: `localllm` starts the TUI; `localllm chat` works without it.
Heavy modules are imported inside the commands so --help stays instant."""

from __future__ import annotations

import argparse
import json
import sys

from localllm import __version__
from localllm.cli.chat_json import server_reader, server_record, turn_record


def _model_args(p: argparse.ArgumentParser) -> None:
    from localllm.config import KV_TYPES, LoadOptions, SamplingParams

    _LOAD, _SAMPLING = LoadOptions(), SamplingParams()  # the defaults live there, not in these strings
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
    p.add_argument("--context", "--ctx", type=int, default=None, dest="context",
                   help=f"context size in tokens (settings: context; default: the settings', else an Ollama "
                        f"model's num_ctx, else {_LOAD.context})")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    p.add_argument("--gpu-layers", type=gpu_layers_arg, default=None, metavar="auto|N",
                   help="layers to offload to the GPU: auto (the load plan places them; the default), "
                        "N, -1 for all, 0 for none")
    p.add_argument("--kv-type", "--kv", choices=KV_TYPES, default=None, dest="kv_type",
                   help=f"llama.cpp KV-cache type (settings: kv_type; default {_LOAD.kv_type}); "
                        "q8_0 and q4_0 turn flash attention on")
    p.add_argument("--force", action="store_true", default=None,
                   help="load even when the load plan says the model does not fit")
    p.add_argument("--load-in", choices=["none", "int8", "nf4", "fp4"], default="none",
                   help="transformers checkpoints: bitsandbytes quantization at load time")
    p.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default="auto",
                   help="transformers checkpoints: weight dtype")
    p.add_argument("--system-prompt", "--system", default=None, dest="system_prompt", help="system prompt")
    p.add_argument("--max-tokens", type=int, default=None, help=f"longest reply in tokens (default {_SAMPLING.max_tokens})")
    p.add_argument("--temperature", "--temp", type=float, default=None, dest="temperature",
                   help=f"sampling temperature (0: greedy; default: the model's own, else {_SAMPLING.temperature}); "
                        "this and the flags below win over the model's defaults and the settings")
    p.add_argument("--top-p", type=float, default=None, help=f"default: the model's own, else {_SAMPLING.top_p}")
    p.add_argument("--top-k", type=int, default=None, help=f"default: the model's own, else {_SAMPLING.top_k}")
    p.add_argument("--min-p", type=float, default=None, help=f"default: the model's own, else {_SAMPLING.min_p}")
    p.add_argument("--repeat-penalty", type=float, default=None,
                   help=f"default: the model's own, else {_SAMPLING.repeat_penalty}")
    p.add_argument("--seed", type=int, default=None, help="sampling seed for repeatable replies")


def gpu_layers_arg(text: str) -> int:
    """`auto` or an integer >= -1, for --gpu-layers."""
    from localllm.config import AUTO_LAYERS

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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
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
    _model_args(chat)
    chat.add_argument("-p", "--prompt", action="append", default=None,
                      help="send a message, print the reply and its stats; repeat -p for successive turns "
                           "of one conversation (each reuses the KV cache of the ones before); -p - reads "
                           "the message from standard input")
    chat.add_argument("--json", action="store_true", help="print one JSON record: reply and every number")
    chat.add_argument("--quiet", action="store_true", help="print the reply only, no stats")
    sub.add_parser("tui", help="start the TUI (the default)").set_defaults(command="tui")
    import importlib

    from localllm.cli.commands import MODULES

    for name in (only,) if only else MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _settings():
    from localllm.config.settings import load_settings_lenient

    settings, warnings = load_settings_lenient()
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return settings


def _options(args, settings):
    """Saved settings, overridden by whatever was given on the command line. The sampling comes back as
    a request: each model resolves it with its own defaults when it loads
    (localllm.models.sampling_defaults: flags, then the model's saved table, the settings, the model's
    metadata, its catalog entry, the app's defaults)."""
    from localllm.config.settings import MODEL_KNOBS, to_load_options, to_sampling
    from localllm.models.sampling_defaults import SamplingRequest

    load, sampling = to_load_options(settings), to_sampling(settings)
    given = {k: v for k, v in vars(args).items() if v is not None}
    for knob in ("context", "threads", "gpu_layers", "kv_type"):  # one name: the flag's dest is the field
        if knob in given:
            setattr(load, knob, given[knob])
    # one name per knob: each flag's dest is the knob's own name
    run = {knob: given[knob] for knob in (*MODEL_KNOBS, "system_prompt") if knob in given}
    if "seed" in given:
        sampling.seed = given["seed"]
    request = SamplingRequest(run=run, settings=settings, base=sampling, ctx_given="context" in given)
    if "seed" in given:
        load.seed = given["seed"]
    load.force = bool(given.get("force"))
    load.api_key_env = args.api_key_env or settings.api_key_env
    load.quantization, load.dtype = args.load_in, args.dtype
    if _endpoint(args):
        load.remote_model = args.model or ""
    return load, request


def _endpoint(args) -> str | None:
    import os

    from localllm.models.endpoints import ENDPOINT_ENV

    return args.endpoint or os.environ.get(ENDPOINT_ENV) or None


def _model_path(args, settings=None) -> str:
    if endpoint := _endpoint(args):
        return endpoint
    if args.model:
        return args.model
    if settings is not None and settings.model:
        return settings.model
    from localllm.models.embedded import EMBEDDED

    return EMBEDDED  # ModelRef (in the session) finds its file


def _new_session(args):
    from localllm.chat.session import ChatSession

    settings = _settings()
    load, request = _options(args, settings)
    session = ChatSession(sampling=request.base, system_prompt=settings.system_prompt, sampling_request=request)
    bar = None
    if not getattr(args, "quiet", False):
        from localllm.cli.progress import ProgressBar

        bar = ProgressBar(unit="percent")
    try:
        session.load(_model_path(args, settings), load, on_progress=bar and (
            lambda f: bar.update(round(f * 100), 100, "loading model", final=f >= 1.0)))
    finally:
        if bar is not None:
            bar.close()
    if bar is not None and session.model.load_s is not None:
        print(f"[loaded in {session.model.load_s:.1f} s]", file=sys.stderr)
    for notice in session.notices:
        print(f"[notice] {notice}", file=sys.stderr)
    return session


def _stream_reply(session, text: str, echo: bool):
    return _print_reply(session.send(text), echo)


def _print_reply(events, echo: bool):
    from localllm.chat.turns import KernelNotice, ReplyDone, TextDelta, TrimNotice
    from localllm.cli.safe_text import terminal_safe

    done = None
    try:
        for event in events:
            if isinstance(event, TextDelta) and echo:
                sys.stdout.write(terminal_safe(event.text))  # a reply's escape codes are not ours to run
                sys.stdout.flush()
            elif isinstance(event, TrimNotice | KernelNotice):
                print(f"[notice] {event}", file=sys.stderr)
            elif isinstance(event, ReplyDone):
                done = event
    finally:
        events.close()  # Ctrl-C while printing: the session stops the worker and reads the reply's end
    return done


def _prompts(given: list[str]) -> list[str] | str:
    """The -p turns, with `-p -` read from standard input (`cat notes.txt | localllm chat -p -`); a str
    says why they cannot be sent. Checked before the model loads."""
    if given.count("-") > 1:
        return "standard input can be read once: give -p - for one turn only"
    if "-" in given:
        text = sys.stdin.read()
        if not text.strip():
            return "-p - read nothing from standard input; pipe the message in: echo Hi | localllm chat -p -"
        given = [text if p == "-" else p for p in given]
    if not all(p.strip() for p in given):
        return "a prompt is empty; give some text with each -p"
    return given


def cmd_chat(args) -> int:
    from localllm.chat.report import full_report

    if args.prompt is not None:
        prompts = _prompts(args.prompt)
        if isinstance(prompts, str):
            print(f"error: {prompts}", file=sys.stderr)
            return 2
        args.prompt = prompts
    session = _new_session(args)
    try:
        if args.prompt is not None:
            server = server_reader(session) if args.json else None
            for turn, prompt in enumerate(args.prompt, 1):
                if server is not None:
                    server.sample()  # the window of this turn's counters starts here
                done = _stream_reply(session, prompt, echo=not args.json)
                assert done is not None
                if args.json:  # JSON Lines: one object per turn, printed as soon as the turn ends
                    record = turn_record(session, turn, prompt, done)
                    if server is not None:  # what the server itself says, over this turn
                        record["server"] = server_record(server, done.stats)
                    print(json.dumps(record), flush=True)
                else:
                    print()
                    if not args.quiet:
                        print(full_report(done.stats), file=sys.stderr)
            return 0
        return _repl(session, args)
    finally:
        session.close()


def _repl(session, args) -> int:
    from localllm import config
    from localllm.chat.recorder import Recorder
    from localllm.chat.report import stats_line
    from localllm.cli.repl_commands import Outcome, handle, line_editing, read_message
    from localllm.errors import LocalLLMError

    model = session.model
    print(f"localllm chat · {model.name} ({model.quant}, ctx {model.n_ctx}) · /help for commands, "
          "/exit to leave, Ctrl-C stops a reply", file=sys.stderr)
    settings = _settings()
    recorder = Recorder(_conversation_store(settings))
    line_editing(config.home() / "repl_history" if settings.save_conversations else None)
    try:
        while True:
            try:
                first = input("> ")
                text = read_message(first, input)  # a pasted block: one message, not one per line
            except (EOFError, KeyboardInterrupt):
                print(file=sys.stderr)
                return 0
            if not text.strip():
                continue
            # a command is one typed line: a block that begins with "/" is a message
            outcome = handle(text, session) if text == first else Outcome("send", text)
            if outcome.action == "exit":
                return 0
            if outcome.action == "reset":
                recorder.new_chat()
            if outcome.action != "send":
                print(outcome.text, file=sys.stderr)
                continue
            text = outcome.text
            try:
                done = _repl_turn(session, recorder, text)
            except LocalLLMError as exc:  # e.g. the worker died: the next message starts a new one
                print(f"\nerror: {exc}", file=sys.stderr)
                continue
            if done is None:  # Ctrl-C: what arrived is kept, marked as stopped
                print("\n[stopped]", file=sys.stderr)
                _warn(recorder.reply(session))
                continue
            print()
            _warn(recorder.reply(session))
            if not args.quiet:
                print(f"[{stats_line(done.stats)}]", file=sys.stderr)
    finally:
        if recorder.store is not None:
            recorder.store.close()


def _repl_turn(session, recorder, text: str):
    """One REPL exchange, saved as the TUI saves it; None when Ctrl-C stopped the reply (the session
    stopped the worker and read the reply's end, so the next message works)."""
    try:
        events = session.send(text)  # a refused message raises here and is not saved
        _warn(recorder.user_turn(session))
        return _print_reply(events, echo=True)
    except KeyboardInterrupt:
        session.stop()
        return None


def _conversation_store(settings):
    """The TUI's conversation store, so REPL chats show in its History (F3); None when saving is off."""
    if not settings.save_conversations:
        return None
    from localllm.chat.conversations import ConversationStore
    from localllm.errors import LocalLLMError

    try:
        return ConversationStore()
    except LocalLLMError as exc:
        print(f"[notice] conversations will not be saved: {exc}", file=sys.stderr)
        return None


def _warn(message: str | None) -> None:
    if message:
        print(f"[notice] {message}", file=sys.stderr)


def cmd_tui(args) -> int:
    from localllm.ui.app import LocalLLMApp

    settings = _settings()
    load, request = _options(args, settings)
    app = LocalLLMApp(model_path=_endpoint(args) or args.model, load_options=load, sampling_request=request,
                      system_prompt=args.system_prompt, settings=settings)
    app.run()
    return app.return_code or 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_wanted_module(argv)).parse_args(argv)
    from localllm.errors import LocalLLMError

    try:
        if getattr(args, "func", None) is not None:
            return int(args.func(args) or 0)
        if args.command == "chat":
            return cmd_chat(args)
        return cmd_tui(args)
    except LocalLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
