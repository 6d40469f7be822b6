"""The chat REPL's slash commands, as users of llama-cli and `ollama run` expect them: /help, /set KNOB
VALUE, /system TEXT, /show, /load MODEL, /save FILE, /reset, /exit. A line that starts with one slash is a command: an unknown one
is refused with the list, never sent to the model; "//text" sends "/text". A message of several lines
(pasted text) goes between triple quotes, as in `ollama run`, or each line but the last ends with a
backslash, as in llama-cli."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localllm.config import settings as settings_fields
from localllm.config.settings import MODEL_KNOBS

# /set's knobs: the model's sampling knobs (resolved with their sources) and the seed (a run value only),
# each of the type its setting has
TYPES: dict[str, type] = {knob: settings_fields.TYPES[knob] for knob in (*MODEL_KNOBS, "seed")}
ALIASES = {"temp": "temperature", "top-p": "top_p", "top-k": "top_k", "min-p": "min_p",
           "repeat-penalty": "repeat_penalty", "max-tokens": "max_tokens", "max": "max_tokens"}

QUOTES = '"""'
HELP = "\n".join([
    "commands:",
    "  /help               this list",
    "  /set KNOB VALUE     temperature (temp), top_p, top_k, min_p, repeat_penalty, max_tokens, seed",
    "  /system TEXT        a new conversation with this system prompt",
    "  /show               the model, its sampling (each value with where it came from), the system prompt",
    "  /load MODEL         another model (a GGUF, a folder, ollama:NAME, embedded); the conversation goes on",
    "  /save FILE          this conversation as Markdown (.md) or JSON (.json)",
    "  /reset              a new conversation (/clear too)",
    "  /exit               leave (/quit, /bye, Ctrl-D too)",
    "  //text              send \"/text\" as a message",
    f"  {QUOTES}                 a message of several lines, up to a line that ends with {QUOTES}",
    "  text \\              (a line that ends with a backslash) the message goes on on the next line",
])


def read_message(first: str, read_line: Callable[[str], str]) -> str:
    """The whole message that begins with the line `first`: a triple-quoted block or backslash-continued
    lines, read on with `read_line(prompt)` (EOFError ends a block where it is); else `first` itself."""
    if first.lstrip().startswith(QUOTES):
        body = first.lstrip()[len(QUOTES):]
        lines = []
        while not body.rstrip().endswith(QUOTES):
            lines.append(body)
            try:
                body = read_line("... ")
            except EOFError:
                return "\n".join(lines).strip("\n")
        lines.append(body.rstrip()[:-len(QUOTES)])
        return "\n".join(lines).strip("\n")
    lines = [first]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        try:
            lines.append(read_line("... "))
        except EOFError:
            break
    return "\n".join(lines)


def line_editing(history: Path | None) -> None:
    """On a terminal: arrow keys edit the line and Up brings back earlier messages, as in a shell (without
    readline, input() echoed them as escape codes). `history`: the file that keeps them across runs
    (None: this run only, when conversations are not saved)."""
    if not sys.stdin.isatty():
        return
    try:
        import readline
    except ImportError:  # a Python built without it: plain input() still works
        return
    readline.set_history_length(1000)
    if history is None:
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(history)

    def save() -> None:
        with contextlib.suppress(OSError):
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history)

    atexit.register(save)


@dataclass
class Outcome:
    """What the REPL does with a line: "send" `text` to the model, "exit", or print `text` (a command's
    answer, or why it was refused) and read the next line."""

    action: str
    text: str = ""


def handle(line: str, session, more: dict[str, Callable[[str], str]] | None = None) -> Outcome:
    """`line` as typed; `session`: the ChatSession (a command may change its sampling or history); `more`:
    the commands the REPL itself carries out (load, save), each given the rest of the line."""
    text = line.strip()
    if text.startswith("//"):
        return Outcome("send", text[1:])
    if not text.startswith("/"):
        return Outcome("send", line)
    word, _, rest = text[1:].partition(" ")
    word, rest = word.lower(), rest.strip()
    if word in ("exit", "quit", "bye"):
        return Outcome("exit")
    if word in ("help", "?", "h"):
        return Outcome("print", HELP)
    if word in ("reset", "clear"):
        session.clear()
        return Outcome("reset", "(a new conversation)")
    if word == "system":
        if not rest:
            return Outcome("print", f"system prompt: {session.system_prompt or '(none)'}\n"
                                    "/system TEXT starts a new conversation with TEXT")
        session.resample(run={"system_prompt": rest})
        session.clear()  # takes the prompt just resolved: this one, from "user"
        return Outcome("reset", "(a new conversation with that system prompt)")
    if word == "set":
        return Outcome("print", _set(rest, session))
    if word == "show":
        return Outcome("print", show(session))
    if more and word in more:
        if not rest:
            return Outcome("print", f"usage: /{word} {'MODEL' if word == 'load' else 'FILE'}")
        return Outcome("print", more[word](rest))
    return Outcome("print", f"unknown command /{word}, not sent to the model (//{word} sends it); /help lists the commands")


def _set(rest: str, session) -> str:
    parts = rest.split()
    if len(parts) != 2:
        return "usage: /set KNOB VALUE, e.g. /set temp 0.3; knobs: " + ", ".join(TYPES)
    name, raw = parts
    knob = ALIASES.get(name.lower(), name.lower())
    if knob not in TYPES:
        return f"no knob {name!r}; knobs: {', '.join(TYPES)}"
    try:  # the settings' own parse and range: /set accepts what settings.toml and the settings box accept
        value: Any = settings_fields.parse_field(knob, raw)
    except settings_fields.SettingsError as exc:
        return str(exc).replace("Setting ", "", 1)
    if knob in MODEL_KNOBS:
        session.resample(run={knob: value})
    else:  # the seed: a run value, kept in the base the knobs are resolved over; -1 ('random'): none
        request = session.sampling_request
        seed = settings_fields.sampling_seed(value)
        session.resample(base=dataclasses.replace(request.base if request else session.sampling, seed=seed))
    return f"{knob} = {shown(knob, getattr(session.sampling, knob))}"


def shown(knob: str, value: Any) -> str:
    return "random" if knob == "seed" and value is None else str(value)


def show(session) -> str:
    lines = []
    model = session.model
    if model is not None:
        lines.append(f"model    {model.name} · {model.backend} · {model.quant} · ctx {model.n_ctx} · "
                     f"{model.n_threads} threads")
    resolved = session.resolved_sampling
    if resolved is not None:
        lines.append(f"sampling {resolved.line()}")
    else:
        s = session.sampling
        lines.append(f"sampling temp {s.temperature} · top-p {s.top_p} · top-k {s.top_k} · min-p {s.min_p} · "
                     f"repeat {s.repeat_penalty} · max {s.max_tokens}")
    lines.append(f"seed     {shown('seed', session.sampling.seed)}")
    lines.append(f"system   {session.system_prompt or '(none)'}")
    lines.append(f"turns    {sum(t.role == 'user' for t in session.history)} in this conversation")
    return "\n".join(lines)
