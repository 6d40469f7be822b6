"""GGUF re-quantization with llama.cpp's own quantizer, and the child-process runner every
quantization job uses (see jobs.py for the jobs themselves).

The quantizer runs in a child process (`python -m localllm.quantize.gguf`): its native call cannot be
interrupted, so cancel kills the child; a native abort on a bad file cannot take the app down; and
its log lines ("[  12/ 272] blk.1.attn_q.weight ...") give the progress.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from localllm.errors import QuantizeError
from localllm.models.gguf_check import GGUFInfo, inspect_gguf
from localllm.models.quants import FLOAT_TYPES, OFFERED, quantizer_types

# llama_ftype by the name users know ("Q4_K_M"); F32 is excluded: llama.cpp's quantizer refuses it.
_PROGRESS = re.compile(rb"\[\s*(\d+)\s*/\s*(\d+)\s*\]")

Progress = Callable[[int, int], None]  # (tensors done, tensors in all)


class QuantizeCancelled(QuantizeError):
    def __init__(self, dst: str) -> None:
        super().__init__(f"Quantization to {dst} was cancelled; nothing was written.")


def parse_qtype(qtype: str) -> tuple[str, int]:
    """The canonical name and llama_ftype of a quant name, any case ("q8_0" -> ("Q8_0", 7))."""
    name = qtype.strip().upper()
    if name not in OFFERED:
        raise QuantizeError(f"Unknown quantization type {qtype!r}. Known: {', '.join(OFFERED)}.")
    return name, quantizer_types()[name]


def requantize_gguf(src: str | os.PathLike[str], dst: str | os.PathLike[str], qtype: str,
                    allow_requantize: bool = True, threads: int = 0,
                    progress: Progress | None = None,
                    cancel: threading.Event | None = None) -> GGUFInfo:
    """Write `src` quantized to `qtype` as `dst` (atomically: a temp name, then a rename)."""
    name, ftype = parse_qtype(qtype)
    info = inspect_gguf(src)  # ModelFileError for a missing, empty or damaged source
    if not allow_requantize and info.quant not in FLOAT_TYPES:
        raise QuantizeError(
            f"{info.path} is already quantized ({info.quant}); re-quantizing it to {name} loses more "
            "quality than quantizing its F16/BF16 original. Allow re-quantization to do it anyway.")
    out = Path(dst).expanduser().resolve()
    if out == Path(info.path):
        raise QuantizeError(f"The output {out} is the source file; choose another name.")
    if not out.parent.is_dir():
        raise QuantizeError(f"The output folder {out.parent} does not exist.")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    job = {"src": info.path, "dst": str(tmp), "ftype": ftype,
           "allow_requantize": allow_requantize, "threads": threads}
    try:
        run_child([sys.executable, "-m", "localllm.quantize.gguf", json.dumps(job)], progress, cancel, str(out))
        written = inspect_gguf(tmp)  # the quantizer said yes: check what it wrote before using it
        if written.quant != name:
            raise QuantizeError(f"llama.cpp wrote {written.quant}, not {name}; {out} was not written.")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return inspect_gguf(out)


def run_child(command: list[str], progress: Progress | None, cancel: threading.Event | None,
              shown: str) -> None:
    """Run a job's child process (runtime.children), relaying its "[ i/ n]" stderr lines as progress;
    it is killed on cancel or Ctrl-C. Its last lines of output explain a failure."""
    from localllm.runtime.children import run_to_end

    def on_line(line: bytes) -> None:
        match = _PROGRESS.search(line)
        if match and progress is not None:
            progress(int(match[1]), int(match[2]))

    rc, log = run_to_end(command, on_line, cancel, lambda: QuantizeCancelled(shown))
    if rc != 0:
        raise QuantizeError(_failure(rc, b"".join(log).decode("utf-8", errors="replace"), shown))


def _failure(rc: int, log: str, shown: str) -> str:
    from localllm.runtime.worker import explain_exit, native_errors

    # the quantizer's own error may share a line with the tensor it stopped at
    own = re.findall(r"\w+: failed to quantize: [^\n]+", log)
    said = own[-1] if own else native_errors(log) or "\n".join(log.strip().splitlines()[-3:])
    why = "the quantizer failed" if rc == 1 else f"the quantizer stopped: {explain_exit(rc)}"
    return f"Could not write {shown}: {why}." + (f" It said: {said}" if said else "")


def _quantize_here(job: dict) -> int:
    """The child's side: the native call itself (llama_cpp is imported only here)."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = job["ftype"]
    params.allow_requantize = job["allow_requantize"]
    params.nthread = job["threads"]  # <= 0: llama.cpp uses every hardware thread
    return int(llama_cpp.llama_model_quantize(job["src"].encode(), job["dst"].encode(),
                                              ctypes.byref(params)))


if __name__ == "__main__":
    sys.exit(1 if _quantize_here(json.loads(sys.argv[1])) else 0)
