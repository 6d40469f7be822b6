"""Validate a GGUF file's header and tensor table before llama.cpp sees it
(llama.cpp aborts the whole process on some malformed files)."""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localllm.errors import ModelFileError
from localllm.models import quants

GGUF_MAGIC = b"GGUF"
# Arrays in real files hold scalars or strings (one level); a deeper nesting is damage or an attack, and
# read recursively it would end in RecursionError.
MAX_ARRAY_DEPTH = 4

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


DAMAGED_HINT = ("Download the file again (or convert it again); if it came from elsewhere, it may not be "
                "a model file at all.")


_U64 = struct.Struct("<Q")


class _Truncated(Exception):
    pass


class _Cursor:
    """Sequential little-endian reads over a memory map; GGUFReader builds numpy views of every
    vocabulary string (seconds for a 49k vocab), this walks them in milliseconds."""

    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise _Truncated
        vals = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return vals[0] if len(vals) == 1 else vals

    def string(self) -> str:
        n = self._length()
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        """Step over a string nobody reads (a vocabulary entry) without copying it."""
        n = self._length()  # first: it moves pos past the length field
        self.pos += n

    def skip_strings(self, n: int) -> None:
        """Step over n strings (a 49k-150k entry vocabulary or merge list) in one tight loop: the
        per-string calls of skip_string made this most of a load's set-up time."""
        buf, pos, end, unpack = self.buf, self.pos, len(self.buf), _U64.unpack_from
        for _ in range(n):
            if pos + 8 > end:
                raise _Truncated
            pos += 8 + unpack(buf, pos)[0]
            if pos > end:  # a length past the end: truncated or hostile, as in _length
                raise _Truncated
        self.pos = pos

    def _length(self) -> int:
        # Checked against what is left of the file before anything is copied: a length field of 2**60
        # is a truncated or hostile header, not a request for that much memory.
        n: int = self.take("<Q")
        if n > len(self.buf) - self.pos:
            raise _Truncated
        return n

    def count(self, item_size: int) -> int:
        """An array's element count, refused when the elements could not fit in the rest of the file
        (each takes at least item_size bytes), so a huge count never becomes a huge loop or list."""
        n: int = self.take("<Q")
        if n * item_size > len(self.buf) - self.pos:
            raise _Truncated
        return n


def _scalar_formats() -> dict[int, str]:
    from gguf.constants import GGUFValueType as T

    return {T.UINT8: "<B", T.INT8: "<b", T.UINT16: "<H", T.INT16: "<h", T.UINT32: "<I",
            T.INT32: "<i", T.FLOAT32: "<f", T.BOOL: "<?", T.UINT64: "<Q", T.INT64: "<q",
            T.FLOAT64: "<d"}


def _value(cur: _Cursor, vtype: int, formats: dict[int, str], keep: bool, depth: int = 0) -> Any:
    from gguf.constants import GGUFValueType as T

    if vtype == T.STRING:
        if keep or depth == 0:
            return cur.string()
        cur.skip_string()
        return None
    if vtype == T.ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise ValueError(f"metadata arrays nested more than {MAX_ARRAY_DEPTH} deep")
        item_type = cur.take("<I")
        # the least bytes one element takes: a string's length field, an array's type and count
        least = struct.calcsize(formats[item_type]) if item_type in formats else \
            8 if item_type == T.STRING else 12 if item_type == T.ARRAY else 1
        count = cur.count(least)
        if item_type in formats and not keep:  # skip numeric arrays in one step
            cur.pos += least * count
            return None
        if item_type == T.STRING and not keep:
            cur.skip_strings(count)
            return None
        items = [_value(cur, item_type, formats, keep, depth + 1) for _ in range(count)]
        return items if keep else None
    if vtype not in formats:
        raise ValueError(f"unknown metadata value type {vtype}")
    return cur.take(formats[vtype])


def _parse(buf: mmap.mmap | bytes) -> tuple[dict[str, Any], list[tuple[str, int, int, int]], int]:
    """Return (metadata without arrays, tensors as (name, n_elements, ggml_type, offset), data_start)."""
    from gguf.constants import GGUF_DEFAULT_ALIGNMENT

    formats = _scalar_formats()
    cur = _Cursor(buf)
    cur.pos = 4
    version = cur.take("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} is not supported")
    n_tensors, n_kv = cur.take("<Q"), cur.take("<Q")
    # Each entry takes at least 12 bytes (key length, type), each tensor 24 (name length, dims, type,
    # offset): counts the file cannot hold are damage, refused before any loop runs them.
    if n_kv * 12 + n_tensors * 24 > len(buf) - cur.pos:
        raise _Truncated
    meta: dict[str, Any] = {}
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
    align = meta.get("general.alignment") or GGUF_DEFAULT_ALIGNMENT
    if not isinstance(align, int) or isinstance(align, bool) or align <= 0 or align & (align - 1):
        raise ValueError(f"general.alignment is {align!r}, not a power of two")
    data_start = (cur.pos + align - 1) // align * align
    return meta, tensors, data_start


def inspect_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read a GGUF's metadata; raise ModelFileError naming the file and the reason."""
    return _inspect(path)[0]


def _inspect(path: str | os.PathLike[str]) -> tuple[GGUFInfo, dict[str, Any], list[tuple[str, int, int, int]]]:
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
    except (ValueError, struct.error, UnicodeError, OverflowError, MemoryError, RecursionError, TypeError,
            KeyError) as exc:  # every way a hostile header can fail the parse: one message, one remedy
        raise ModelFileError(shown, f"the GGUF header is damaged ({type(exc).__name__}: {exc})",
                             DAMAGED_HINT) from None
    except OSError as exc:  # unreadable, or a special file mmap refuses
        raise ModelFileError(shown, f"it cannot be read ({exc.strerror or exc})",
                             "Check its permissions, or copy it to a regular file.") from None
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
    if ctx is not None and (not isinstance(ctx, int) or isinstance(ctx, bool) or ctx < 0):
        raise ModelFileError(shown, f"the GGUF header is damaged ({arch}.context_length is {ctx!r})",
                             DAMAGED_HINT)
    info = GGUFInfo(
        path=str(p.resolve()),
        size_bytes=size,
        architecture=arch,
        name=str(meta.get("general.name") or p.stem),
        quant=quants.name_of(ftype if isinstance(ftype, int) else None),  # a string here is no number
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
    metadata: dict[str, Any]
    tensors: tuple[TensorBytes, ...]

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def arch_value(self, key: str, default: Any = None) -> Any:
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
