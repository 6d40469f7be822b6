"""`localllm chat`: the -p turns (plain, or a JSON line each) and the REPL (its commands in
repl_commands), each exchange saved as the TUI saves it."""

from __future__ import annotations

import json
import sys

from localllm.cli.chat_json import server_reader, server_record, turn_record
from localllm.cli.run_options import new_session, run_options, settings_warned


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
    session = new_session(args)
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
    settings = settings_warned()
    recorder = Recorder(_conversation_store(settings))
    line_editing(config.home() / "repl_history" if settings.save_conversations else None)
    more = {"load": lambda model: _repl_load(session, args, settings, model),
            "save": lambda path: _repl_save(recorder, session, path)}
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
            outcome = handle(text, session, more) if text == first else Outcome("send", text)
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


def _repl_load(session, args, settings, model: str) -> str:
    """/load MODEL: this run's load options, another model; the conversation goes on with it."""
    from localllm.errors import LocalLLMError

    options, _ = run_options(args, settings)
    try:
        info = session.load(model, options)
    except LocalLLMError as exc:
        now = f"{session.model.name} is still loaded" if session.model else "No model is loaded now"
        return f"error: {str(exc).rstrip()} {now}."
    return f"loaded {info.name} ({info.quant}, ctx {info.n_ctx}); the conversation goes on with it"


def _repl_save(recorder, session, path: str) -> str:
    """/save FILE: the conversation so far, Markdown or JSON by the file's suffix (saved or not)."""
    from pathlib import Path

    from localllm.chat.conversation_export import to_json, to_markdown, write_atomically
    from localllm.errors import LocalLLMError

    target = Path(path).expanduser()
    if target.suffix.lower() not in (".md", ".json"):
        return "error: name a .md (Markdown) or .json file"
    try:
        conv = recorder.conversation(session)
        if conv is None:
            return "error: nothing to save yet: send a message first"
        text = to_json(conv) if target.suffix.lower() == ".json" else to_markdown(conv)
        write_atomically(target, text)
    except (LocalLLMError, OSError) as exc:
        return f"error: cannot write {target}: {getattr(exc, 'strerror', None) or exc}"
    return f"wrote {target} ({len(conv.turns)} messages)"


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
