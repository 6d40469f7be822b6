"""The chat REPL's slash commands on a real session (the scripted backend in a real worker): /set changes
the sampling with source "user", /system starts a conversation with that prompt, an unknown /word is
refused and not sent, "//text" sends "/text"; and `localllm chat` reading a pipe sends only the messages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from localllm.chat.conversations import ConversationStore
from localllm.chat.session import ChatSession
from localllm.cli.repl_commands import handle
from localllm.config import LoadOptions
from localllm.models.sampling_defaults import SamplingRequest


@pytest.fixture
def session(scripted_model):
    s = ChatSession(sampling_request=SamplingRequest())
    s.load(scripted_model(["Hello", " there"], delay_s=0.0), LoadOptions(context=512))
    yield s
    s.close()


def test_set_changes_a_knob_with_source_user_and_refuses_what_is_not_one(session) -> None:
    assert handle("/set temp 0.3", session).text == "temperature = 0.3"
    assert session.sampling.temperature == 0.3 and session.resolved_sampling.sources["temperature"] == "user"
    assert handle("/set top-k 5", session).text == "top_k = 5" and session.sampling.top_k == 5
    assert handle("/set seed 7", session).text == "seed = 7" and session.sampling.seed == 7
    assert session.sampling.temperature == 0.3  # the seed kept the knobs set before it
    before = session.sampling
    assert handle("/set top_p 3", session).text == "'top_p' must be a number from 0.0 to 1.0 (got 3.0)."
    assert "must be an integer from 0" in handle("/set top_k many", session).text
    # the settings' ranges: what settings.toml refuses, /set refuses (it took 0.05 and any upper value)
    assert "from 0.1 to 10.0" in handle("/set repeat_penalty 0.05", session).text
    assert "from 0.0 to 5.0" in handle("/set temp 9", session).text
    assert "no knob 'warmth'" in handle("/set warmth 1", session).text
    assert "usage" in handle("/set temp", session).text
    assert session.sampling == before  # a refused value changes nothing
    assert handle("/set seed random", session).text == "seed = random" and session.sampling.seed is None
    handle("/set seed 7", session)
    shown = handle("/show", session).text
    assert "temp 0.3 user" in shown and "top-k 5 user" in shown and "seed     7" in shown


def test_system_starts_a_conversation_with_that_prompt(session) -> None:
    list(session.send("Hi"))
    assert session.history
    outcome = handle("/system Answer in one word.", session)
    assert outcome.action == "reset" and not session.history
    assert session.system_prompt == "Answer in one word."
    assert session.resolved_sampling.sources["system_prompt"] == "user"
    assert session.messages()[0] == {"role": "system", "content": "Answer in one word."}


def test_unknown_commands_are_not_sent_and_double_slash_is(session) -> None:
    unknown = handle("/nope now", session)
    assert unknown.action == "print" and "unknown command /nope" in unknown.text
    assert handle("//nope now", session).text == "/nope now" and handle("//x", session).action == "send"
    assert handle("plain text", session).text == "plain text"
    assert [handle(w, session).action for w in ("/exit", "/quit", "/bye", "/help", "/reset")] == \
        ["exit", "exit", "exit", "print", "reset"]


def test_the_repl_on_a_pipe_sends_only_the_messages(scripted_model, tmp_path) -> None:
    path = scripted_model(["Hello", " there"], delay_s=0.0)
    home = tmp_path / "home"
    env = dict(os.environ, LOCALLLM_HOME=str(home))
    lines = ["/help", "/set temp 0.5", "/nope", "first message", "/system Be brief.", "//slash message", "/show",
             '"""pasted', "", "/not a command here", 'block"""', "one \\", "two", '"""/help', 'me"""', "/exit"]
    run = subprocess.run([sys.executable, "-m", "localllm", "chat", "-m", path], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert "unknown command /nope" in run.stderr and "temp 0.5 user" in run.stderr
    assert run.stdout.count("Hello there") == 5
    with ConversationStore(home / "conversations.db") as store:
        saved = [[t.content for t in store.load(c.id).turns if t.role == "user"] for c in store.list()]
    # /system began a new conversation; a pasted block and continued lines are one message each
    assert sorted(saved) == [["/slash message", "pasted\n\n/not a command here\nblock", "one \ntwo", "/help\nme"],
                             ["first message"]]


def test_a_message_of_several_lines() -> None:
    from localllm.cli.repl_commands import read_message

    def reader(*lines: str):
        rest = list(lines)

        def read(prompt: str) -> str:
            if not rest:
                raise EOFError
            return rest.pop(0)
        return read

    assert read_message("plain", reader("never read")) == "plain"
    assert read_message('"""one line"""', reader()) == "one line"
    assert read_message('"""', reader("a", "", "b", '"""')) == "a\n\nb"
    assert read_message('  """a', reader('b  """  ')) == "a\nb  "
    assert read_message('"""cut', reader("short")) == "cut\nshort"  # the input ended inside the block
    assert read_message("x \\", reader("y \\", "z")) == "x \ny \nz"


def test_in_a_terminal_up_brings_back_the_last_message_and_it_is_kept_for_next_time(scripted_model, tmp_path):
    """readline on a terminal: without it, Up printed ^[[A into the message."""
    import pty
    import select
    import time

    path = scripted_model(["Hello", " there"], delay_s=0.0)
    home = tmp_path / "home"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "localllm", "chat", "-m", path], stdin=slave, stdout=slave,
                            stderr=slave, env=dict(os.environ, LOCALLLM_HOME=str(home), TERM="xterm"),
                            close_fds=True)
    os.close(slave)
    seen = b""

    def wait_for_prompts(count: int) -> None:
        nonlocal seen
        end = time.monotonic() + 60
        while seen.count(b"> ") < count:
            assert time.monotonic() < end and proc.poll() is None, seen.decode(errors="replace")
            if select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 4096)

    try:
        wait_for_prompts(1)
        os.write(master, b"first message\r")
        wait_for_prompts(2)
        os.write(master, b"\x1b[A\r")  # Up, Enter
        wait_for_prompts(3)
        os.write(master, b"/exit\r")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    with ConversationStore(home / "conversations.db") as store:
        (conversation,) = store.list()
        sent = [t.content for t in store.load(conversation.id).turns if t.role == "user"]
    assert sent == ["first message", "first message"]
    assert "first message" in (home / "repl_history").read_text()


def test_chat_p_dash_reads_the_message_from_standard_input(scripted_model, tmp_path) -> None:
    import json

    path = scripted_model(["Blue."], delay_s=0.0)
    env = dict(os.environ, LOCALLLM_HOME=str(tmp_path))
    piped = "The sky is blue.\nGrass is green.\n\nWhat color is the sky?"

    def chat(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "localllm", "chat", "-m", path, *args], input=stdin,
                              capture_output=True, text=True, timeout=120, env=env)

    run = chat("-p", "Answer briefly.", "-p", "-", "--json", stdin=piped)
    assert run.returncode == 0, run.stderr
    turns = [json.loads(line) for line in run.stdout.splitlines()]
    assert [t["prompt"] for t in turns] == ["Answer briefly.", piped]
    empty = chat("-p", "-")
    assert empty.returncode == 2 and "read nothing from standard input" in empty.stderr
    twice = chat("-p", "-", "-p", "-", stdin=piped)
    assert twice.returncode == 2 and "read once" in twice.stderr


def test_load_switches_the_model_and_save_writes_the_conversation(scripted_model, tmp_path) -> None:
    import json

    first = scripted_model(["One."], delay_s=0.0, name="first")
    second = scripted_model(["Two."], delay_s=0.0, name="second")
    home = tmp_path / "home"
    lines = ["hello", f"/load {second}", "again", f"/save {tmp_path / 'chat.json'}", f"/save {tmp_path / 'chat.md'}",
             "/save notes.txt", "/load /nowhere/model.gguf", "/show", "/exit"]
    run = subprocess.run([sys.executable, "-m", "localllm", "chat", "-m", first], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, LOCALLLM_HOME=str(home)))
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("One.") == 1 and run.stdout.count("Two.") == 1  # the second turn, the second model
    assert "loaded second" in run.stderr and "the conversation goes on" in run.stderr
    assert "name a .md (Markdown) or .json file" in run.stderr
    assert "/nowhere/model.gguf" in run.stderr and "second is still loaded" in run.stderr
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert [m["content"] for m in saved["messages"]] == ["hello", "One.", "again", "Two."]
    markdown = (tmp_path / "chat.md").read_text()
    assert "hello" in markdown and "Two." in markdown


def test_save_writes_the_conversation_when_conversations_are_not_kept(scripted_model, tmp_path) -> None:
    """With save_conversations off, /save said there was nothing to export: the session's own turns are."""
    import json

    model = scripted_model(["One."], delay_s=0.0, name="first")
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings.toml").write_text("save_conversations = false\n")
    lines = [f"/save {tmp_path / 'empty.md'}", "hello", f"/save {tmp_path / 'chat.json'}", "/exit"]
    run = subprocess.run([sys.executable, "-m", "localllm", "chat", "-m", model], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, LOCALLLM_HOME=str(home)))
    assert run.returncode == 0, run.stderr
    assert "nothing to save yet: send a message first" in run.stderr and not (tmp_path / "empty.md").exists()
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert [m["content"] for m in saved["messages"]] == ["hello", "One."]
    assert not (home / "data" / "conversations.db").exists() and not list(home.rglob("conversations.db"))
