"""How long `localllm models` takes over a large store once the identity cache is warm (issue 23: under
1 s for 500 entries).

Builds, under a temporary HOME, an Ollama store (manifests + blobs) and an LM Studio folder holding
N distinct small GGUFs between them (half each), lists them once cold (every header read and hashed,
facts saved in LOCALLLM_HOME/file_facts.json), then times:
- a warm listing in this process (facts in memory);
- a warm `localllm models --json` in a fresh process (facts read back from the file), the way a user
  runs it; the process start and imports are included and reported apart.

    python benchmarks/list_stores.py            # 500 entries
    python benchmarks/list_stores.py -n 2000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_gguf(path: Path, name: str) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_file_type(15)
    writer.add_context_length(256)
    writer.add_tensor("tok_embd.weight", np.linspace(0, 1, 256, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def build(home: Path, n: int) -> None:
    ollama, lms = home / ".ollama" / "models", home / ".lmstudio" / "models"
    (ollama / "blobs").mkdir(parents=True)
    for i in range(n):
        if i % 2:
            folder = lms / f"pub{i % 7}" / f"model-{i}-GGUF"
            folder.mkdir(parents=True)
            tiny_gguf(folder / f"model-{i}-Q4_K_M.gguf", f"model {i}")
            continue
        tmp = ollama / "blobs" / "tmp.gguf"
        tiny_gguf(tmp, f"model {i}")
        data = tmp.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        tmp.rename(ollama / "blobs" / f"sha256-{digest}")
        manifest = ollama / "manifests" / "registry.ollama.ai" / "library" / f"model{i}" / "latest"
        manifest.parent.mkdir(parents=True)
        manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": len(data)}]}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=500, help="entries to build (default 500)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="list-stores-") as tmp:
        home = Path(tmp) / "home"
        env = {"HOME": str(home), "LOCALLLM_HOME": str(Path(tmp) / "localllm"), "OLLAMA_MODELS": str(home / ".ollama" / "models"),
               "LOCALLLM_STORES": "ollama,lmstudio"}  # the stores it built, whatever the caller's environment turns off
        os.environ.update(env)
        began = time.perf_counter()
        build(home, args.n)
        print(f"built {args.n} GGUFs in {time.perf_counter() - began:.1f} s")

        from localllm.models import library

        began = time.perf_counter()
        entries = library.list_models()
        stored = sum(e.source in ("ollama", "lmstudio") for e in entries)
        print(f"cold listing: {stored} store entries in {time.perf_counter() - began:.2f} s")
        began = time.perf_counter()
        library.list_models()
        print(f"warm listing, this process: {time.perf_counter() - began:.3f} s")

        child_env = {**os.environ, **env, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import localllm.models.library"], env=child_env, check=True)
        start = time.perf_counter() - began
        began = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "localllm", "models", "--json"], env=child_env, check=True,
                             capture_output=True, text=True)
        total = time.perf_counter() - began
        listed = sum(e["source"] in ("ollama", "lmstudio") for e in json.loads(out.stdout))
        print(f"warm `localllm models --json`, fresh process: {listed} store entries in {total:.2f} s "
              f"({start:.2f} s of it starting Python and importing; listing ~{total - start:.2f} s)")
    if stored != args.n or listed != args.n:  # a timing over fewer entries than built says nothing
        print(f"MISSED ENTRIES: built {args.n}, listed {stored} here and {listed} in the fresh process")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
