"""llama-cpp-python's OpenAI-compatible server, started with this machine's CPU kernels: the command
line `localllm serve` runs and the tests use to start a real server. The extra buffer types follow the
extra_buffers setting; on auto, the machine's probe (binding.extra_bufts_for) decides, so an AMX Xeon
whose AMX kernel dies of SIGILL gets a server that answers instead of one that dies at its first decode."""

from __future__ import annotations

import sys

from localllm.runtime.binding import extra_bufts_for

LAUNCHER = "localllm.backends.llama_server_main"


def server_command(model: str, *args: str, extra_bufts: str = "auto") -> tuple[list[str], str]:
    """(argv of the server, why its extra buffers are on or off). extra_bufts: auto | on | off, the
    extra_buffers setting's values; args: llama_cpp.server's own (--port, --n_ctx ...)."""
    on, why = extra_bufts_for(extra_bufts)
    argv = [sys.executable, "-m", LAUNCHER, "--extra-bufts", "on" if on else "off", "--model", model, *args]
    return argv, why
