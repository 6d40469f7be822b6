"""Validate a GGUF file's header and tensor table before llama.cpp sees it
(llama.cpp aborts the whole process on some malformed files)."""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from localllm.errors import ModelFileError
from localllm.models import quants

GGUF_MAGIC = b"GGUF"



@dataclass(frozen=True)
class GGUFInfo:
    path: str
    size_bytes: int
    architecture: str
    name: str
    quant: str
    context_length: int | None
    n_params: int
    has_chat_template: bool

    @property
    def bits_per_weight(self) -> float:
        return self.size_bytes * 8 / self.n_params if self.n_params else 0.0


class _Truncated(Exception):
    pass


class _Cursor:
    """Sequential little-endian reads over a memory map; GGUFReader builds numpy views of every
    vocabulary string (seconds for a 49k vocab), this walks them in milliseconds."""

    def __init__(self, buf) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise _Truncated
        vals = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return vals[0] if len(vals) == 1 else vals

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise _Truncated
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")


def _scalar_formats() -> dict[int, str]:
    from gguf.constants import GGUFValueType as T

    return {T.UINT8: "<B", T.INT8: "<b", T.UINT16: "<H", T.INT16: "<h", T.UINT32: "<I",
            T.INT32: "<i", T.FLOAT32: "<f", T.BOOL: "<?", T.UINT64: "<Q", T.INT64: "<q",
            T.FLOAT64: "<d"}


def _value(cur: _Cursor, vtype: int, formats: dict[int, str], keep: bool):
    from gguf.constants import GGUFValueType as T

    if vtype == T.STRING:
        return cur.string()
    if vtype == T.ARRAY:
        item_type, count = cur.take("<I"), cur.take("<Q")
        if item_type in formats and not keep:  # skip numeric arrays in one step
            cur.pos += struct.calcsize(formats[item_type]) * count
            if cur.pos > len(cur.buf):
                raise _Truncated
            return None
        items = [_value(cur, item_type, formats, keep) for _ in range(count)]
        return items if keep else None
    if vtype not in formats:
        raise ValueError(f"unknown metadata value type {vtype}")
    return cur.take(formats[vtype])


def _parse(buf) -> tuple[dict, list[tuple[str, int, int, int]], int]:
    """Return (metadata without arrays, tensors as (name, n_elements, ggml_type, offset), data_start)."""
    from gguf.constants import GGUF_DEFAULT_ALIGNMENT

    formats = _scalar_formats()
    cur = _Cursor(buf)
    cur.pos = 4
    version = cur.take("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} is not supported")
    n_tensors, n_kv = cur.take("<Q"), cur.take("<Q")
    meta: dict = {}
    for _ in range(n_kv):
        key = cur.string()
        meta[key] = _value(cur, cur.take("<I"), formats, keep=False)
    tensors = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.take("<I")
        if n_dims > 8:
            raise ValueError(f"tensor {name} has {n_dims} dimensions")
        n_elements = 1
        for _ in range(n_dims):
            n_elements *= cur.take("<Q")
        tensors.append((name, n_elements, cur.take("<I"), cur.take("<Q")))
    align = int(meta.get("general.alignment") or GGUF_DEFAULT_ALIGNMENT)
    data_start = (cur.pos + align - 1) // align * align
    return meta, tensors, data_start


def inspect_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read a GGUF's metadata; raise ModelFileError naming the file and the reason."""
    return _inspect(path)[0]


def _inspect(path: str | os.PathLike[str]) -> tuple[GGUFInfo, dict, list[tuple[str, int, int, int]]]:
    p = Path(path).expanduser()
    shown = str(p)
    if not p.exists():
        raise ModelFileError(shown, "the file does not exist", "Check the path.")
    if p.is_dir():
        raise ModelFileError(shown, "it is a directory, not a .gguf file", "Give the path of a .gguf file.")
    size = p.stat().st_size
    if size == 0:
        raise ModelFileError(shown, "the file is empty (0 bytes)", "Download it again.")
    with p.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(
            shown, f"not a GGUF file (it starts with {magic!r}, a GGUF file starts with b'GGUF')",
            "localllm's llama.cpp backend loads .gguf files; transformers checkpoints need their own backend.",
        )
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        with p.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            meta, tensors, data_start = _parse(buf)
    except _Truncated:
        raise ModelFileError(shown, f"the file is truncated inside its header ({size} bytes)",
                             "Download the file again.") from None
    except (ValueError, struct.error, UnicodeError, OverflowError, MemoryError) as exc:
        raise ModelFileError(shown, f"the GGUF header is damaged ({exc})", "Download the file again.") from None
    if not tensors:
        raise ModelFileError(shown, "the GGUF file holds no tensors", "Download the file again.")
    data_end = data_start
    for name, n_elements, ggml_type, offset in tensors:
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise ModelFileError(shown, f"tensor {name} has an unknown type {ggml_type}",
                                 "The file may need a newer llama.cpp, or it is damaged.") from None
        data_end = max(data_end, data_start + offset + n_elements * type_size // block)
    if data_end > size:
        raise ModelFileError(
            shown, f"the file is truncated ({size} bytes, its tensor table needs {data_end})",
            "Download the file again.",
        )
    arch = str(meta.get("general.architecture") or "unknown")
    ftype = meta.get("general.file_type")
    ctx = meta.get(f"{arch}.context_length")
    info = GGUFInfo(
        path=str(p.resolve()),
        size_bytes=size,
        architecture=arch,
        name=str(meta.get("general.name") or p.stem),
        quant=quants.name_of(ftype),
        context_length=int(ctx) if ctx is not None else None,
        n_params=sum(t[1] for t in tensors),
        has_chat_template="tokenizer.chat_template" in meta,
    )
    return info, meta, tensors


@dataclass(frozen=True)
class TensorBytes:
    name: str
    n_elements: int
    ggml_type: str  # "Q4_K", "Q8_0", "F32" ...
    nbytes: int


@dataclass(frozen=True)
class GGUFLayout:
    """Everything a memory estimate needs from a GGUF header: scalar metadata and per-tensor bytes."""

    info: GGUFInfo
    metadata: dict
    tensors: tuple[TensorBytes, ...]

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def arch_value(self, key: str, default=None):
        """`{architecture}.{key}` from the metadata, e.g. arch_value("block_count")."""
        value = self.metadata.get(f"{self.info.architecture}.{key}")
        return default if value is None else value


def read_layout(path: str | os.PathLike[str]) -> GGUFLayout:
    """Validate like inspect_gguf (same ModelFileError messages), then return the metadata and the
    bytes each tensor really takes: a quant label says little about embeddings kept at Q8_0."""
    info, meta, tensors = _inspect(path)  # raises a clear ModelFileError on any damage
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    table = []
    for name, n_elements, ggml_type, _offset in tensors:
        qtype = GGMLQuantizationType(ggml_type)
        block, type_size = GGML_QUANT_SIZES[qtype]
        table.append(TensorBytes(name, n_elements, qtype.name, n_elements * type_size // block))
    return GGUFLayout(info=info, metadata=meta, tensors=tuple(table))
