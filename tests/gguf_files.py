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
