"""benchmarks/model_factory.py's tensor tables: the names each arch has in gguf's tables, the catalog's
parameter counts, and headers that read back as the catalog model. Files are written sparse (a header
and tensor table, the data a hole: kilobytes on disk), never a shape's full weights."""

from __future__ import annotations

import re

import gguf
import numpy as np
import pytest

from benchmarks import model_factory as mf
from localllm.machine.weights import table_weights
from localllm.models.catalog import ModelSpec
from localllm.models.gguf_check import read_layout

SMOL_VOCAB = 49152  # the tokenizer every shape is written with


def _arch_tensor_names(arch: str) -> set[str]:
    member = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
    return {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[member]}


@pytest.mark.parametrize("name", list(mf.SHAPES))
def test_tensor_tables_use_the_arch_names_and_count_the_catalog_params(name: str) -> None:
    shape = mf.SHAPES[name]
    allowed = _arch_tensor_names(shape.arch)
    layout = mf.tensors(shape, shape.spec.vocab)
    for tname, dims, kind in layout:
        base = re.sub(r"^blk\.\d+\.", "blk.{bid}.", tname).rsplit(".", 1)[0]
        assert base in allowed, (name, tname)
        assert kind == "F32" or dims[0] % 256 == 0, (name, tname)  # K-quant rows are whole blocks
    assert len({t for t, _, _ in layout}) == len(layout)
    params = sum(int(np.prod(dims)) for _, dims, _ in layout)
    # Gemma 3's catalog count leaves out 64 embedding rows the GGUF has too; the rest are exact
    assert params == pytest.approx(shape.spec.params, rel=1e-4)


def test_gemma3_has_its_norms_256_wide_heads_and_no_output_head() -> None:
    names = {t: (dims, kind) for t, dims, kind in mf.tensors(mf.SHAPES["gemma-3-4b"], SMOL_VOCAB)}
    assert "output.weight" not in names and names["token_embd.weight"] == ((2560, SMOL_VOCAB), "Q6_K")
    for suffix in ("post_attention_norm", "post_ffw_norm", "attn_q_norm", "attn_k_norm"):
        assert sum(t.endswith(f".{suffix}.weight") for t in names) == 34
    assert names["blk.0.attn_q_norm.weight"][0] == (256,) and names["blk.0.attn_q.weight"][0] == (2560, 2048)
    assert names["blk.0.attn_k.weight"][0] == (2560, 1024)


def test_olmoe_stacks_64_experts_per_layer_behind_a_router() -> None:
    names = {t: (dims, kind) for t, dims, kind in mf.tensors(mf.SHAPES["olmoe-1b-7b"], SMOL_VOCAB)}
    assert names["blk.15.ffn_gate_inp.weight"] == ((2048, 64), "F32")
    assert names["blk.15.ffn_gate_exps.weight"] == ((2048, 1024, 64), "Q4_K")
    assert names["blk.15.ffn_up_exps.weight"] == ((2048, 1024, 64), "Q4_K")
    assert names["blk.15.ffn_down_exps.weight"] == ((1024, 2048, 64), "Q6_K")
    assert not any(t.endswith("ffn_gate.weight") for t in names) and "output.weight" in names


@pytest.mark.parametrize("name", ["gemma-3-4b", "olmoe-1b-7b"])
def test_a_sparse_header_reads_back_as_the_catalog_model(name: str, tmp_path) -> None:
    shape = mf.SHAPES[name]
    path = mf.make(name, tmp_path / f"{name}.gguf", quiet=True, sparse=True)
    assert path.stat().st_blocks * 512 < 8 * 2**20  # a hole, not gigabytes
    spec, cat = ModelSpec.from_gguf(path), shape.spec
    assert spec.family == shape.arch
    for field in ("layers", "hidden", "ffn", "heads", "kv_heads", "head_dim", "tied_embeddings",
                  "sliding_window", "sliding_pattern", "experts", "experts_active"):
        assert getattr(spec, field) == getattr(cat, field), field
    layout = mf.tensors(shape, SMOL_VOCAB)
    on_disk = read_layout(path)
    assert on_disk.tensor_bytes == sum(mf.nbytes(dims, kind) for _, dims, kind in layout)
    per_layer, embd, out, _bpw, _ = table_weights(str(path))
    assert len(per_layer) == shape.layers and sum(per_layer) + embd + out == on_disk.tensor_bytes


def test_sparse_writes_only_to_an_explicit_path() -> None:
    with pytest.raises(ValueError, match="out path"):
        mf.make("gemma-3-4b", sparse=True)
