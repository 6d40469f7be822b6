"""`localllm serve [-m MODEL]`: llama-cpp-python's OpenAI-compatible server on a GGUF, with the CPU
kernels this machine can run (an AMX Xeon gets llama.cpp's extra buffer types off, as the chat does)."""

from __future__ import annotations

import os
import sys

from localllm.cli.commands import summary


def register(sub) -> None:
    from localllm.cli.main import setting

    p = sub.add_parser("serve", help=summary(__name__))
    p.add_argument("-m", "--model", default="embedded", metavar="MODEL",
                   help="'embedded' (default) or a GGUF file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--context", "--ctx", type=setting("context"), default=None, dest="context", help="context size in tokens (default: the settings')")
    p.add_argument("--threads", type=setting("threads"), default=None, help="CPU threads (default: the settings')")
    p.add_argument("server_args", nargs="*", metavar="-- ARG",
                   help="more of llama_cpp.server's own options, after --")
    p.set_defaults(func=run)


def run(args) -> int:
    from localllm.cli.run_options import settings_warned
    from localllm.config.settings import to_load_options
    from localllm.errors import LocalLLMError
    from localllm.models.ref import ModelRef
    from localllm.runtime.llama_server import server_command

    settings = settings_warned()
    options = to_load_options(settings)
    ref = ModelRef.parse(args.model)
    if ref.backend != "llama_cpp":
        print(f"error: serve takes 'embedded' or a GGUF file, not {args.model!r}", file=sys.stderr)
        return 2
    try:
        path = ref.path
    except LocalLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not os.path.isfile(path):
        print(f"error: no such GGUF file: {path}", file=sys.stderr)
        return 2
    argv, why = server_command(
        path, "--host", args.host, "--port", str(args.port),
        "--n_ctx", str(args.context or options.context),
        "--n_threads", str(args.threads or options.resolved().threads), *args.server_args,
        extra_bufts=settings.extra_buffers)
    print(f"serving {ref.name} at http://{args.host}:{args.port}/v1 (llama.cpp extra CPU buffers {why})",
          file=sys.stderr, flush=True)
    os.execv(argv[0], argv)  # the server becomes this process: Ctrl-C and kill reach it directly
