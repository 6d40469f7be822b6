"""Hostile GGUF headers (issue 21, item 10): crafted files that once ended in RecursionError, a bare
ValueError or a loop over a count the file cannot hold now get the one ModelFileError, naming the file
and saying what to do."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from localllm.errors import ModelFileError
from localllm.models.gguf_check import inspect_gguf

U32, I32, F32, STRING, ARRAY = 4, 5, 6, 8, 9  # GGUF metadata value types


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    return _str(key) + struct.pack("<I", vtype) + payload


def _tensor(name: str = "t", n: int = 4) -> bytes:
    return _str(name) + struct.pack("<I", 1) + struct.pack("<Q", n) + struct.pack("<I", 0) + struct.pack("<Q", 0)


def _gguf(kvs: list[bytes], tensors: list[bytes] | None = None, n_kv: int | None = None,
          data: bytes = b"\0" * 64) -> bytes:
    tensors = [_tensor()] if tensors is None else tensors
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs) if n_kv is None else n_kv)
    return head + b"".join(kvs) + b"".join(tensors) + data


def _refused(tmp_path: Path, data: bytes, *words: str) -> str:
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    with pytest.raises(ModelFileError) as err:
        inspect_gguf(path)
    message = str(err.value)
    assert str(path) in message and "Download the file again" in message
    for word in words:
        assert word in message
    return message


def test_a_sound_crafted_file_reads(tmp_path) -> None:
    """The builder makes files the reader accepts, so each case below fails for its one fault."""
    path = tmp_path / "ok.gguf"
    path.write_bytes(_gguf([_kv("general.architecture", STRING, _str("llama")),
                            _kv("llama.context_length", U32, struct.pack("<I", 4096)),
                            _kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 2) + _str("a") + _str("b"))]))
    info = inspect_gguf(path)
    assert (info.architecture, info.context_length, info.n_params) == ("llama", 4096, 4)


def test_deeply_nested_arrays_are_damage_not_a_recursion_error(tmp_path) -> None:
    depth = sys.getrecursionlimit() * 2
    nested = struct.pack("<IQ", ARRAY, 1) * depth + struct.pack("<IQ", U32, 0)
    _refused(tmp_path, _gguf([_kv("a", ARRAY, nested)]), "damaged", "nested")


@pytest.mark.parametrize("kv,words", [
    (_kv("llama.context_length", STRING, _str("lots")), ("context_length",)),
    (_kv("general.alignment", I32, struct.pack("<i", -8)), ("alignment",)),
    (_kv("general.alignment", U32, struct.pack("<I", 24)), ("alignment",)),
    (_kv("general.alignment", F32, struct.pack("<f", 32.5)), ("alignment",)),
], ids=["context-length-string", "alignment-negative", "alignment-not-power-of-2", "alignment-float"])
def test_wrong_typed_values_are_damage_not_a_bare_error(tmp_path, kv, words) -> None:
    arch = _kv("general.architecture", STRING, _str("llama"))
    _refused(tmp_path, _gguf([arch, kv]), "damaged", *words)


def test_a_string_file_type_is_an_unknown_quant_not_a_crash(tmp_path) -> None:
    path = tmp_path / "ftype.gguf"
    path.write_bytes(_gguf([_kv("general.file_type", STRING, _str("Q4_K"))]))
    assert inspect_gguf(path).quant == "unknown"


@pytest.mark.parametrize("payload", [
    struct.pack("<Q", 2**60),  # a string value 2**60 bytes long
    struct.pack("<Q", 2**60 + 1) + b"x",
], ids=["2**60", "2**60+1"])
def test_string_lengths_are_bounded_by_the_file(tmp_path, payload) -> None:
    _refused(tmp_path, _gguf([_str("k") + struct.pack("<I", STRING) + payload]), "truncated")


@pytest.mark.parametrize("strings", [
    _str("a") + struct.pack("<Q", 2**60) + b"x",  # the second vocabulary entry claims 2**60 bytes
    _str("a") + struct.pack("<Q", 9),  # the last one runs past the end of the file
    _str("a") + b"\x01\x00",  # its length field is cut
], ids=["2**60", "past-the-end", "cut-length"])
def test_vocabulary_strings_skipped_in_bulk_are_bounded_by_the_file(tmp_path, strings) -> None:
    """The vocabulary and merge lists are stepped over in one loop (skip_strings, a load's set-up went
    from ~470 to ~40 ms for SmolLM2); each length is still checked against the end of the file."""
    vocab = _kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 2) + strings)
    _refused(tmp_path, b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + vocab, "truncated")


def _sparse(path: Path, head: bytes, size: int) -> Path:
    with open(path, "wb") as fh:  # a sparse file: `size` long, kilobytes on disk
        fh.write(head)
        fh.truncate(size)
    return path


# Counts the file cannot hold: read one entry at a time from a 4 GiB run of zeros (each zero entry is a
# valid empty key with a uint8 value), the old reader looped for many minutes before it saw the end.
@pytest.mark.parametrize("head", [
    b"GGUF" + struct.pack("<IQQ", 3, 1, 2**40),  # 2**40 metadata entries
    b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + _kv("v", ARRAY, struct.pack("<IQ", STRING, 2**40)),  # 2**40 strings
], ids=["metadata-count", "array-count"])
def test_counts_are_bounded_by_the_file_size(tmp_path, head) -> None:
    path = _sparse(tmp_path / "sparse.gguf", head, 4 << 30)
    code = ("import sys\nfrom localllm.errors import ModelFileError\nfrom localllm.models.gguf_check import inspect_gguf\n"
            "try:\n    inspect_gguf(sys.argv[1])\nexcept ModelFileError as e:\n    print(e)\n")
    # a generous deadline: the bounded reader answers in well under a second, the unbounded one in minutes
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert str(path) in out.stdout and "truncated" in out.stdout
