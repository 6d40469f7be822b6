"""The child side of a `--to gptq` job, run by GPTQModel's own Python (see gptq_env): it imports
nothing from localllm, only the standard library, torch and GPTQModel.

    <gptq python> gptq_job.py '{"src": ..., "dst": ..., "bits": 4, "group_size": 64, ...}'

Calibration text: localllm/data/calibration.txt (public domain), cut into samples of ~128 tokens.
Progress goes to stderr as "[i/n] ..." lines (one per quantized layer), relayed by the parent.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

CALIBRATION = Path(__file__).resolve().parents[1] / "data" / "calibration.txt"  # a script: no localllm import
MIN_SAMPLES = 8
SAMPLE_TOKENS = 128


def calibration_samples(tokenizer, wanted: int) -> list[str]:
    """Paragraph-aligned pieces of the shipped text; too little text is an error, not a silent bad model."""
    text = CALIBRATION.read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    samples, current = [], ""
    for p in paragraphs:
        current = f"{current}\n\n{p}" if current else p
        if len(tokenizer(current)["input_ids"]) >= SAMPLE_TOKENS:
            samples.append(current)
            current = ""
    if len(samples) < MIN_SAMPLES:
        raise SystemExit(f"failed to quantize: the calibration text gives {len(samples)} samples of "
                         f"{SAMPLE_TOKENS} tokens; GPTQ needs at least {MIN_SAMPLES}")
    return samples[:wanted]


def main(job: dict) -> int:
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(os.cpu_count() or 1))
    if job.get("log_dir"):  # GPTQModel writes its log files into the working folder
        os.makedirs(job["log_dir"], exist_ok=True)
        os.chdir(job["log_dir"])
    print("[0/3] loading GPTQModel", file=sys.stderr, flush=True)
    from gptqmodel import GPTQModel, QuantizeConfig
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(job["src"])
    samples = calibration_samples(tokenizer, int(job.get("calibration_samples", 64)))
    config = QuantizeConfig(bits=int(job["bits"]), group_size=int(job["group_size"]),
                            desc_act=bool(job["desc_act"]), sym=bool(job["sym"]))
    print(f"[1/3] quantizing with {len(samples)} calibration samples", file=sys.stderr, flush=True)
    model = GPTQModel.load(job["src"], config, device="cpu")
    model.quantize(samples, batch_size=1, tokenizer=tokenizer)
    print("[2/3] saving", file=sys.stderr, flush=True)
    model.save(job["dst"])
    tokenizer.save_pretrained(job["dst"])
    print("[3/3] saved", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
