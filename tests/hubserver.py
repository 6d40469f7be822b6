"""A loopback server speaking the Hugging Face Hub's file API the way huggingface_hub uses it,
with faults on demand: dropped connections, short bodies, corrupt bytes, auth errors, slow streams.

Point huggingface_hub at it with `HF_ENDPOINT=server.url` (or pass `endpoint=` explicitly)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

CHUNK = 16 * 1024
LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file: what the Hub sends as ETag for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Fault:
    """What goes wrong when a file's bytes are served; counters run down with each GET."""

    drop_at: int | None = None  # cut the connection once this file offset is reached...
    drop_times: int = 1  # ...on this many responses
    corrupt_times: int = 0  # flip a byte in this many responses
    truncate_to: int | None = None  # the server's copy ends here (a clean but short body)
    delay_s: float = 0.0  # sleep per 16 KiB chunk
    status: int | None = None  # answer GETs with this status...
    status_times: int = 1 << 30  # ...this many times


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str
    gated: bool = False
    private: bool = False
    tokens: set[str] = field(default_factory=set)  # tokens with access (gated: licence accepted)

    _hashes: dict[tuple[str, str], str] = field(default_factory=dict)

    def is_lfs(self, path: str) -> bool:
        return path.endswith(LFS_SUFFIXES) or len(self.files[path]) > 100_000

    def sha256(self, path: str) -> str:
        """Memoized: hashing a 98 MB model on every request would dominate the tests' time."""
        key = ("sha256", path)
        if key not in self._hashes:
            self._hashes[key] = hashlib.sha256(self.files[path]).hexdigest()
        return self._hashes[key]

    def git_sha1(self, path: str) -> str:
        key = ("sha1", path)
        if key not in self._hashes:
            self._hashes[key] = git_blob_sha1(self.files[path])
        return self._hashes[key]


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorized: bool
    sent: int = 0  # body bytes written for this request


class HubServer:
    """ThreadingHTTPServer in a thread. LFS files redirect to a 'CDN' on another origin
    (http://localhost:PORT vs http://127.0.0.1:PORT), as the real Hub does."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.faults: dict[tuple[str, str], Fault] = {}
        self.requests: list[Request] = []
        self.bytes_sent: Counter[str] = Counter()  # file path -> body bytes sent
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.hub = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.cdn_url = f"http://localhost:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_repo(self, repo_id: str, files: dict[str, bytes], **kw) -> Repo:
        commit = hashlib.sha1(repr((repo_id, sorted(files))).encode()).hexdigest()
        self.repos[repo_id] = repo = Repo(dict(files), commit, **kw)
        return repo

    def fault(self, repo_id: str, path: str, **kw) -> Fault:
        self.faults[(repo_id, path)] = f = Fault(**kw)
        return f

    def gets(self, path: str, since: int = 0) -> list[Request]:
        """The GETs of `path`'s bytes, from request number `since` on."""
        return [r for r in self.requests[since:] if r.method == "GET" and r.path.endswith("/" + path)]

    def ranges(self, path: str, since: int = 0) -> list[str | None]:
        """Range headers of the GETs that fetched `path`'s bytes."""
        return [r.range for r in self.gets(path, since)]

    def sent(self, path: str, since: int = 0) -> int:
        """Body bytes sent for `path` by requests from number `since` on (late writes of a killed
        client's stream count against its own request, not a later one)."""
        return sum(r.sent for r in self.gets(path, since))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub; httpx pools connections
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms ACK waits

    def log_message(self, *args) -> None:
        pass

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    # --- plumbing -------------------------------------------------------------------------
    def _json(self, code: int, obj, headers: dict[str, str] | None = None, head: bool = False) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, code: int, error_code: str, message: str, head: bool, extra: dict | None = None) -> None:
        headers = {"X-Error-Code": error_code, "X-Error-Message": message, **(extra or {})}
        self._json(code, {"error": message}, headers, head=head)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else None

    def _access(self, repo_id: str, head: bool, files: bool) -> Repo | None:
        """The repo if this request may see it, else send the Hub's error and return None."""
        repo = self.hub.repos.get(repo_id)
        token = self._token()
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", head)
            return None
        if repo.private and token not in repo.tokens:
            self._error(401, "RepoNotFound", "Repository not found", head)
            return None
        if repo.gated and files and token not in repo.tokens:
            if token is None:
                self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. Please log in.", head)
            else:
                self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in "
                            "the authorized list.", head)
            return None
        return repo

    def _route(self, head: bool) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        self.record = Request(self.command, path, self.headers.get("Range"),
                              self.headers.get("Authorization") is not None)
        with self.hub.lock:
            self.hub.requests.append(self.record)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            return self._model_info(m.group(1), m.group(2), parse_qs(parts.query), head)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path):
            return self._tree(m.group(1), m.group(2), m.group(3) or "", head)
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._resolve(m.group(1), m.group(2), m.group(3), head)
        if m := re.fullmatch(r"/cdn/([^/]+/[^/]+)/([^/]+)/(.+)", path):
            return self._cdn(m.group(1), m.group(2), m.group(3), head)
        self._error(404, "NotFound", "no such route", head)

    def _revision_ok(self, repo: Repo, revision: str, head: bool) -> bool:
        if revision in ("main", repo.commit):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        return False

    # --- API ------------------------------------------------------------------------------
    def _sibling(self, repo: Repo, path: str, blobs: bool) -> dict:
        if not blobs:
            return {"rfilename": path}
        data = repo.files[path]
        entry = {"rfilename": path, "size": len(data), "blobId": repo.git_sha1(path)}
        if repo.is_lfs(path):
            entry["lfs"] = {"size": len(data), "sha256": repo.sha256(path), "pointerSize": 134}
        return entry

    def _model_info(self, repo_id: str, revision: str | None, query: dict, head: bool) -> None:
        repo = self._access(repo_id, head, files=False)
        if repo is None or not self._revision_ok(repo, revision or "main", head):
            return
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        self._json(200, {
            "_id": repo.commit[:24], "id": repo_id, "modelId": repo_id, "sha": repo.commit,
            "private": repo.private, "gated": "manual" if repo.gated else False, "disabled": False,
            "tags": [], "siblings": [self._sibling(repo, p, blobs) for p in sorted(repo.files)],
        }, head=head)

    def _tree(self, repo_id: str, revision: str, sub: str, head: bool) -> None:
        repo = self._access(repo_id, head, files=False)
        if repo is None or not self._revision_ok(repo, revision, head):
            return
        entries = []
        for p in sorted(repo.files):
            if sub and not p.startswith(sub.rstrip("/") + "/"):
                continue
            s = self._sibling(repo, p, True)
            entry = {"type": "file", "oid": s["blobId"], "size": s["size"], "path": p}
            if "lfs" in s:
                entry["lfs"] = {"oid": s["lfs"]["sha256"], "size": s["size"], "pointerSize": 134}
            entries.append(entry)
        self._json(200, entries, head=head)

    # --- files ----------------------------------------------------------------------------
    def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self._access(repo_id, head, files=True)
        if repo is None or not self._revision_ok(repo, revision, head):
            return
        if path not in repo.files:
            return self._error(404, "EntryNotFound", f"{path} does not exist", head,
                               {"X-Repo-Commit": repo.commit})
        data = repo.files[path]
        common = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
        if repo.is_lfs(path):
            sha = repo.sha256(path)
            self.send_response(302)
            self.send_header("Location", f"{self.hub.cdn_url}/cdn/{repo_id}/{sha}/{path}")
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{repo.git_sha1(path)}"')
            for k, v in common.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._serve(repo_id, path, data, f'"{repo.git_sha1(path)}"', head, common)

    def _cdn(self, repo_id: str, sha: str, path: str, head: bool) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or path not in repo.files or repo.sha256(path) != sha:
            return self._error(404, "NotFound", "no such object", head)
        self._serve(repo_id, path, repo.files[path], f'"{sha}"', head, {"Accept-Ranges": "bytes"})

    def _serve(self, repo_id: str, path: str, data: bytes, etag: str, head: bool, headers: dict) -> None:
        fault = self.hub.faults.get((repo_id, path)) or Fault()
        if not head and fault.status is not None and fault.status_times > 0:
            fault.status_times -= 1
            return self._error(fault.status, "Injected", "injected failure", head)
        if fault.truncate_to is not None:
            data = data[:fault.truncate_to]
        start = 0
        if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or ""):
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        if not head and fault.corrupt_times > 0 and body:
            fault.corrupt_times -= 1
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if head:
            return
        drop = None
        if fault.drop_at is not None and fault.drop_times > 0 and start < fault.drop_at < len(data):
            fault.drop_times -= 1
            drop = fault.drop_at - start
        sent = 0
        while sent < len(body):
            n = min(CHUNK, len(body) - sent) if drop is None else min(CHUNK, len(body) - sent, drop - sent)
            if fault.delay_s:
                time.sleep(fault.delay_s)
            try:
                self.wfile.write(body[sent:sent + n])
                self.wfile.flush()
            except OSError:  # the client went away (cancel)
                self.close_connection = True
                break
            sent += n
            with self.hub.lock:
                self.hub.bytes_sent[path] += n
                self.record.sent += n
            if drop is not None and sent >= drop:
                self._cut()
                return

    def _cut(self) -> None:
        """Close the connection mid-body. A FIN, not an RST, so the client gets every byte sent
        before the cut and tests can predict the resume offset exactly."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def free_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_gguf(path: Path, n_floats: int = 300_000, file_type: int = 15, name: str = "tiny") -> bytes:
    """Write a valid GGUF (one F32 tensor; general.file_type 15 = Q4_K_M) and return its bytes."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_file_type(file_type)
    writer.add_context_length(256)
    writer.add_tensor("tok_embd.weight", np.linspace(0, 1, n_floats, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path).read_bytes()


def tiny_safetensors(n_floats: int = 4096) -> bytes:
    """A valid safetensors file with one F32 tensor, built by hand (no torch)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + struct.pack(f"<{n_floats}f", *range(n_floats))


def checkpoint_files(gptq: bool = False) -> dict[str, bytes]:
    """A small transformers checkpoint as a repo holds it, pickle .bin and extras included."""
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "max_position_embeddings": 256,
              "torch_dtype": "float16"}
    if gptq:
        config["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    shard = tiny_safetensors()
    index = {"metadata": {}, "weight_map": {"w": "model-00001-of-00002.safetensors",
                                            "v": "model-00002-of-00002.safetensors"}}
    return {
        "config.json": json.dumps(config).encode(),
        "generation_config.json": b'{"do_sample": false}',
        "tokenizer.json": b'{"version": "1.0", "model": {}}',
        "tokenizer_config.json": b'{"chat_template": "{{ messages }}"}',
        "special_tokens_map.json": b"{}",
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": shard,
        "model-00002-of-00002.safetensors": shard[:-4] + b"\x00\x00\x80?",
        "pytorch_model.bin": b"PK pickle weights",
        "README.md": b"# tiny\n",
        "onnx/model.onnx": b"onnx",
    }


@pytest.fixture
def hub_server():
    """A running HubServer; repos are added by each test."""
    with HubServer() as server:
        yield server


@pytest.fixture(scope="session")
def gguf_data(tmp_path_factory) -> bytes:
    """A valid 1.2 MB GGUF (Q4_K_M in its header) to serve."""
    return tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def hub_config(server: HubServer, cache_dir: Path, token: str | None = None):
    """A HubConfig pointing at the server: explicit, so the machine's own token or cache never leak in."""
    from localllm.hub.repos import HubConfig

    return HubConfig(endpoint=server.url, cache_dir=Path(cache_dir), token=token, timeout_s=5.0)
