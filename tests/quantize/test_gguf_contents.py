"""GGUF completeness and vocabulary, tested by construction: a good GGUF rewritten with the
`gguf` module's own tools (gguf_new_metadata.copy_with_new_metadata) minus a tensor, with a
wrong context length, rope base or BOS id, must be caught with the exact message."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from medrelease.quantize.gguf.contents import (
    FLOOR_TYPE,
    bits_per_weight,
    check_gguf_files,
    tokenizer_kind,
)


def rewrite_gguf(
    src: Path, dst: Path, *, drop: tuple[str, ...] = (), fields: dict[str, Any] | None = None
) -> Path:
    """A copy of `src` without the tensors in `drop` and with `fields` (key -> value) changed."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"]
    writer = gguf.GGUFWriter(dst, arch=bytes(arch.parts[arch.data[0]]).decode())
    new = {}
    for key, value in (fields or {}).items():
        new[key] = MetadataDetails(reader.fields[key].types[0], value)
    view = SimpleNamespace(
        fields=reader.fields,
        tensors=[t for t in reader.tensors if t.name not in drop],
        endianess=reader.endianess,
    )
    copy_with_new_metadata(view, writer, new, [])  # type: ignore[arg-type]
    return dst


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> dict[str, Path]:
    from medrelease.quantize.gguf.build import convert, quantize
    from medrelease.quantize.gguf.quant_types import gguf_type

    out = tmp_path_factory.mktemp("contents")
    (f32,) = convert(tiny_llama, out, "m-F32", "f32", None)
    (q4,) = quantize([f32], out, "m-Q4_K_M", gguf_type("Q4_K_M"), 2)
    return {"F32": f32, "Q4_K_M": q4}


@pytest.fixture(scope="module")
def tokenizer(tiny_llama: Path) -> Any:
    from transformers import AutoTokenizer

    from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts

    return TokenizerFacts.of(AutoTokenizer.from_pretrained(str(tiny_llama)))


@pytest.mark.slow
def test_good_ggufs_pass(ggufs, tiny_llama, tokenizer):
    for qtype, path in ggufs.items():
        checks = check_gguf_files([path], tiny_llama, qtype, tokenizer)
        assert checks["vocabulary"]["ok"], checks["vocabulary"]
        assert checks["contents"]["ok"], checks["contents"]
        assert checks["vocabulary"]["gguf_model"] == "llama"
        assert checks["vocabulary"]["hf_kind"] == "SentencePiece BPE"
    detail = check_gguf_files([ggufs["Q4_K_M"]], tiny_llama, "Q4_K_M", tokenizer)["contents"]
    # the tiny model's rows (256) suit k-quants; 1-D norms stay F32, some tensors get Q6_K
    assert "Q4_K" in detail["detail"] and "F32" in detail["detail"]


@pytest.mark.slow
def test_our_reader_parses_exactly_what_gguf_py_parses(ggufs):
    """gguf_reader parses faster (a plain view of the memory map, string arrays item by item):
    every field's parts (dtype and bytes) and every tensor's name, type, shape and bytes equal
    those of gguf-py's own GGUFReader."""
    import gguf
    import numpy as np

    from medrelease.quantize.gguf.contents import gguf_reader

    for path in ggufs.values():
        ours, theirs = gguf_reader(path), gguf.GGUFReader(path)
        assert type(ours.data) is np.ndarray and isinstance(theirs.data, np.memmap)
        assert list(ours.fields) == list(theirs.fields)
        for name, field in theirs.fields.items():
            mine = ours.fields[name]
            assert (mine.types, mine.data, mine.offset) == (field.types, field.data, field.offset)
            assert [(a.dtype, bytes(a)) for a in mine.parts] == [
                (b.dtype, bytes(b)) for b in field.parts
            ], name
        assert len(ours.tensors) == len(theirs.tensors) > 0
        for a, b in zip(ours.tensors, theirs.tensors, strict=True):
            assert (a.name, a.tensor_type, list(a.shape)) == (b.name, b.tensor_type, list(b.shape))
            assert np.array_equal(a.data, b.data)


def test_a_dropped_tensor_is_named(ggufs, tiny_llama, tokenizer, tmp_path):
    bad = rewrite_gguf(ggufs["Q4_K_M"], tmp_path / "bad.gguf", drop=("blk.1.attn_q.weight",))
    contents = check_gguf_files([bad], tiny_llama, "Q4_K_M", tokenizer)["contents"]
    assert contents["ok"] is False
    assert contents["detail"] == (
        "1 weight(s) of the merged model missing: "
        "blk.1.attn_q.weight (model.layers.1.self_attn.q_proj.weight)"
    )


@pytest.mark.slow
def test_wrong_context_length_and_rope_base_are_named(ggufs, tiny_llama, tokenizer, tmp_path):
    import json

    cfg = json.loads((tiny_llama / "config.json").read_text())
    n_ctx = cfg["max_position_embeddings"]
    bad = rewrite_gguf(
        ggufs["F32"],
        tmp_path / "ctx.gguf",
        fields={"llama.context_length": 999, "llama.rope.freq_base": 500000.0},
    )
    contents = check_gguf_files([bad], tiny_llama, "F32", tokenizer)["contents"]
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta"))
    assert contents["detail"] == (
        f"context length 999 differs from the merged config's {n_ctx}; "
        f"rope freq base 500000 differs from the merged config's {theta:g}"
    )


@pytest.mark.slow
def test_a_weight_coarser_than_the_type_promises_is_named(ggufs, tiny_llama, tokenizer):
    """A Q4_K_M file passed off as Q8_0: every quantized weight is below Q8_0's floor."""
    contents = check_gguf_files([ggufs["Q4_K_M"]], tiny_llama, "Q8_0", tokenizer)["contents"]
    assert contents["ok"] is False
    # all 16 matrices (2 layers x 7, embedding, head) are quantized; the 1-D norms stay F32
    assert contents["detail"].startswith(
        "16 weight(s) stored less precisely than Q8_0 allows (floor Q8_0): "
        "output.weight Q6_K, token_embd.weight Q4_K, blk.0.ffn_down.weight Q4_K"
    )


@pytest.mark.slow
def test_a_wrong_bos_id_is_named(ggufs, tiny_llama, tokenizer, tmp_path):
    bad = rewrite_gguf(
        ggufs["F32"], tmp_path / "bos.gguf", fields={"tokenizer.ggml.bos_token_id": 7}
    )
    vocab = check_gguf_files([bad], tiny_llama, "F32", tokenizer)["vocabulary"]
    assert vocab["ok"] is False
    assert vocab["detail"] == f"BOS id differs: merged {tokenizer.bos_token_id}, GGUF 7"


def test_floors_follow_bits_per_weight():
    # every floor is a real ggml type, and a quant's floor never exceeds its main type
    assert bits_per_weight("F32") == 32.0 and bits_per_weight("Q8_0") == 8.5
    assert bits_per_weight("Q4_K") == 4.5 and bits_per_weight("Q6_K") == 6.5625
    for floor in FLOOR_TYPE.values():
        assert bits_per_weight(floor) > 1.0
    assert bits_per_weight(FLOOR_TYPE["IQ3_XS"]) < bits_per_weight("IQ3_S")
    # llama.cpp's k-quant fallbacks (Q4_K -> Q5_0, Q6_K -> Q8_0) are never below the floor
    assert bits_per_weight("Q5_0") >= bits_per_weight(FLOOR_TYPE["Q4_K_M"])
    assert bits_per_weight("Q8_0") >= bits_per_weight(FLOOR_TYPE["Q6_K"])


def test_tokenizer_kinds(tmp_path):
    byte_level = {"model": {"type": "BPE"}, "pre_tokenizer": {"type": "ByteLevel"}}
    assert tokenizer_kind(byte_level, tmp_path) == "byte-level BPE"
    nested = {
        "model": {"type": "BPE", "byte_fallback": True},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}]},
    }
    assert tokenizer_kind(nested, tmp_path) == "byte-level BPE"
    spm = {"model": {"type": "BPE", "byte_fallback": True}, "decoder": {"type": "Sequence"}}
    assert tokenizer_kind(spm, tmp_path) == "SentencePiece BPE"
    assert tokenizer_kind({"model": {"type": "WordPiece"}}, tmp_path) == "WordPiece"
    assert tokenizer_kind({"model": {"type": "BPE"}}, tmp_path) is None
    assert tokenizer_kind(None, tmp_path) is None
    (tmp_path / "tokenizer.model").write_bytes(b"x")
    assert tokenizer_kind(None, tmp_path) == "SentencePiece Unigram"


@pytest.mark.slow
def test_a_byte_token_missing_from_a_byte_level_vocabulary_is_named(tmp_path):
    """A byte-level character the merged vocabulary has, missing from the GGUF at its id."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import AutoTokenizer

    from medrelease.quantize.gguf.build import convert
    from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts
    from medrelease.testing.tiny import TinySpec, build_tiny_model

    model = build_tiny_model(tmp_path / "qwen2", TinySpec(arch="qwen2"))
    (good,) = convert(model, tmp_path, "q", "f32", None, pre_tokenizer="qwen2")
    tokenizer = TokenizerFacts.of(AutoTokenizer.from_pretrained(str(model)))
    assert check_gguf_files([good], model, "F32", tokenizer)["vocabulary"]["ok"]
    import gguf

    tokens = gguf.GGUFReader(good).fields["tokenizer.ggml.tokens"].contents()
    byte_char = sorted(ByteLevel.alphabet())[0]  # the character of one byte
    i = tokens.index(byte_char)
    tokens[i] = "<gone>"
    bad = rewrite_gguf(good, tmp_path / "bad.gguf", fields={"tokenizer.ggml.tokens": tokens})
    vocab = check_gguf_files([bad], model, "F32", tokenizer)["vocabulary"]
    assert vocab["ok"] is False
    assert vocab["problems"] == [
        f"1 byte token(s) of the merged vocabulary are not in the GGUF at their ids: {byte_char}",
    ]
