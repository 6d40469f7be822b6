"""`python -m localllm.backends.llama_server_main --extra-bufts on|off [llama_cpp.server args...]`:
llama-cpp-python's OpenAI-compatible server, with llama.cpp's extra CPU buffer types as asked.

llama_cpp.server offers no such switch, and on some AMX Xeons its default (on) dies of SIGILL at the
first decode (llama.cpp #20824). This runs the server module in this same process after handing its
Llama() the model params with the field set, the way the model worker loads (see llama_cpp._model_params).
`localllm serve` and the tests start servers through it with what this machine's probe chose."""

from __future__ import annotations

import runpy
import sys


def split_args(argv: list[str]) -> tuple[bool, list[str]]:
    """(extra buffers on?, the server's own arguments) from this launcher's argv[1:]."""
    if len(argv) >= 2 and argv[0] == "--extra-bufts" and argv[1] in ("on", "off"):
        return argv[1] == "on", argv[2:]
    raise SystemExit("usage: python -m localllm.backends.llama_server_main --extra-bufts on|off "
                     "[llama_cpp.server arguments]")


def main(argv: list[str] | None = None) -> None:
    extra_bufts, server_args = split_args(sys.argv[1:] if argv is None else argv)
    from localllm.backends.llama_cpp import _model_params

    sys.argv = ["llama_cpp.server", *server_args]
    with _model_params(extra_bufts):  # the server's every Llama() gets these params
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
