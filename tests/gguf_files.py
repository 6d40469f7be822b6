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
