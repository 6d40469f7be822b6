"""Stand-ins for the job children, for the tests of how children end: a tiny checkpoint folder that
plans as a GPTQ job, and a fake GPTQModel Python (LOCALLLM_GPTQ_PYTHON) that the real job path runs as
the job's child. The fake writes into the job's `<out>.partial` as GPTQModel would, starts a
grandchild, writes both pids into `ready`, then (mode "hang") prints nothing and never ends: the GPTQ or
dequantize step that is silent for minutes. Mode "fail" exits 1 there; mode "ok" finishes the folder."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import psutil

FAKE = '''#!{python}
import json, os, subprocess, sys, time
job = json.loads(sys.argv[2])
dst = job["dst"]
os.makedirs(dst, exist_ok=True)
with open(os.path.join(dst, "model.safetensors"), "wb") as f:
    f.write(b"half-written")
os.makedirs(dst + ".partial", exist_ok=True)  # as hf_convert's save would, beside it
mode = os.environ.get("FAKE_JOB_MODE", "hang")
if mode == "ok":
    import shutil
    shutil.rmtree(dst + ".partial")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(job["src"], name), os.path.join(dst, name))
    sys.exit(0)
grandchild = subprocess.Popen(["sleep", "600"])
ready = {ready!r}
with open(ready + ".tmp", "w") as f:
    f.write(f"{{os.getpid()}} {{grandchild.pid}}")
os.replace(ready + ".tmp", ready)
if mode == "fail":
    print("failed to quantize: the fake said no", file=sys.stderr)
    grandchild.kill()
    sys.exit(1)
time.sleep(600)
'''


def tiny_checkpoint(folder: Path, hidden: int = 64) -> Path:
    """config.json and one F32 tensor: enough for plan_job's GPTQ checks."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": hidden,
                                                    "architectures": ["LlamaForCausalLM"]}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [hidden, hidden],
                               "data_offsets": [0, hidden * hidden * 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header
                                               + bytes(hidden * hidden * 4))
    return folder


def fake_gptq_python(folder: Path, ready: Path) -> Path:
    script = folder / "fake-gptq-python"
    script.write_text(FAKE.format(python=sys.executable, ready=str(ready)))
    script.chmod(0o755)
    return script


def running_in_group(pgid: int) -> list[int]:
    """The processes of process group `pgid` that still run (a zombie has ended: it waits to be reaped)."""
    alive = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return alive


def read_ready(ready: Path) -> tuple[int, int]:
    child, grandchild = ready.read_text().split()
    return int(child), int(grandchild)


def wait_until(predicate, timeout: float, what: str):
    """Poll `predicate` until it is true (its value is returned) or `timeout` seconds pass."""
    import time

    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.05)
    return value
