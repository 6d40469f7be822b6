"""Broken copies of a real GGUF for the tests of the paths that load one."""

from __future__ import annotations

import shutil
import struct


def bad_arch_copy(src: str, dst) -> str:
    """A GGUF with a sound header whose architecture llama.cpp does not know ("llamb")."""
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as fh:
        head = fh.read(1 << 20)
        at = head.index(b"general.architecture") + len(b"general.architecture")
        _vtype, n = struct.unpack_from("<IQ", head, at)
        assert head[at + 12:at + 12 + n] == b"llama"
        fh.seek(at + 12)
        fh.write(b"llamb")
    return str(dst)


def file_type_copy(src: str, dst, file_type: int) -> str:
    """The same GGUF labelled with another general.file_type (llama_ftype number)."""
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as fh:
        head = fh.read(1 << 20)
        at = head.index(b"general.file_type") + len(b"general.file_type")
        vtype, _old = struct.unpack_from("<II", head, at)
        assert vtype == 4  # GGUF uint32
        fh.seek(at + 4)
        fh.write(struct.pack("<I", file_type))
    return str(dst)


def with_kv_copy(src: str, dst, values: dict) -> str:
    """The same GGUF with more metadata: `values` maps a key to a float (float32), an int (int32) or a
    str, appended after the file's own keys; the tensor data is copied unchanged, realigned."""
    import gguf

    reader = gguf.GGUFReader(src)
    kv_end = max(f.offset + sum(p.nbytes for p in f.parts) for f in reader.fields.values())
    infos_end = max(t.field.offset + sum(p.nbytes for p in t.field.parts) for t in reader.tensors)
    align = int(reader.alignment)
    extra = b""
    for key, value in values.items():
        name = key.encode()
        extra += struct.pack("<Q", len(name)) + name
        if isinstance(value, float):
            extra += struct.pack("<If", gguf.GGUFValueType.FLOAT32, value)
        elif isinstance(value, int):
            extra += struct.pack("<Ii", gguf.GGUFValueType.INT32, value)
        else:
            text = value.encode()
            extra += struct.pack("<IQ", gguf.GGUFValueType.STRING, len(text)) + text
    with open(src, "rb") as fh:
        blob = fh.read()
    head = bytearray(blob[:infos_end])
    n_kv = struct.unpack_from("<Q", head, 16)[0]
    struct.pack_into("<Q", head, 16, n_kv + len(values))
    head = head[:kv_end] + extra + head[kv_end:]
    head += b"\0" * (-len(head) % align)
    with open(dst, "wb") as fh:
        fh.write(head)
        fh.write(blob[reader.data_offset:])
    return str(dst)
