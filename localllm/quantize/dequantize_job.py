"""The child side of a `--to safetensors` job: transformers dequantizes a GGUF into a full-precision
safetensors checkpoint. Run as `python -m localllm.quantize.dequantize_job JSON`; progress goes to stderr as
"[i/n] step" lines, which quantize.run_child relays."""

from __future__ import annotations

import json
import sys


def main(job: dict) -> int:
    print("[0/2] reading the GGUF and dequantizing it with transformers", file=sys.stderr, flush=True)
    from localllm.backends.hf_convert import gguf_to_checkpoint

    gguf_to_checkpoint(job["src"], job["dst"])
    print("[2/2] saved", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
