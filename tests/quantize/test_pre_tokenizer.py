"""`quantize.gguf.pre_tokenizer`: name the llama.cpp pre-tokenizer of a BPE tokenizer the
converter cannot identify by its hash; the quant's tokenization check then proves the choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from medrelease.core.errors import InputError


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medrelease.testing.tiny import TinySpec, build_tiny_model

    # a byte-level BPE trained from scratch: its hash is unknown to the converter
    return build_tiny_model(tmp_path_factory.mktemp("q2") / "qwen2", TinySpec(arch="qwen2"))


@pytest.mark.slow
def test_named_pre_tokenizer_converts_and_tokenizes_like_transformers(
    tmp_path: Path, tiny_qwen2: Path
) -> None:
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    from medrelease.quantize.gguf.build import convert
    from medrelease.quantize.measure.tokenization import check_tokenization_gguf
    from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts
    from medrelease.testing.llama import open_gguf

    notes: list[str] = []
    files = convert(tiny_qwen2, tmp_path, "x", "f32", None, pre_tokenizer="qwen2", notes=notes)
    assert [f.name for f in files] == ["x.gguf"]
    assert len(notes) == 1 and "pre_tokenizer 'qwen2' was used" in notes[0]
    field = GGUFReader(files[0]).fields["tokenizer.ggml.pre"]
    assert bytes(field.parts[field.data[0]]).decode() == "qwen2"

    llm = open_gguf(files[0], 64, 1)
    try:
        result = check_tokenization_gguf(
            llm, TokenizerFacts.of(AutoTokenizer.from_pretrained(tiny_qwen2))
        )
    finally:
        llm.close()
    assert result["ok"] is True, result


@pytest.mark.slow
def test_a_wrong_family_is_caught_by_the_tokenization_check(
    tmp_path: Path, tiny_qwen2: Path
) -> None:
    """Naming the wrong family converts, but the check fails the quant: llama.cpp's
    `llama-bpe` pre-tokenizer also makes the runtime add a BOS the Qwen2 tokenizer does not."""
    from transformers import AutoTokenizer

    from medrelease.quantize.gguf.build import convert
    from medrelease.quantize.measure.tokenization import check_tokenization_gguf
    from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts
    from medrelease.testing.llama import open_gguf

    files = convert(tiny_qwen2, tmp_path, "x", "f32", None, pre_tokenizer="llama-bpe")
    llm = open_gguf(files[0], 64, 1)
    try:
        result = check_tokenization_gguf(
            llm, TokenizerFacts.of(AutoTokenizer.from_pretrained(tiny_qwen2))
        )
    finally:
        llm.close()
    assert result["ok"] is False and "probes differ" in result["detail"]


def test_an_unknown_name_gets_a_did_you_mean(tmp_path: Path, tiny_qwen2: Path) -> None:
    from medrelease.quantize.gguf.build import convert

    with pytest.raises(InputError) as info:
        convert(tiny_qwen2, tmp_path, "x", "f32", None, pre_tokenizer="qwen")
    assert "'qwen' is not a pre-tokenizer" in info.value.message
    assert "did you mean" in info.value.message and "'qwen2'" in info.value.message
    assert not list(tmp_path.glob("*.gguf"))


def test_the_name_is_validated_in_the_recipe() -> None:
    from pydantic import ValidationError

    from medrelease.quantize.config import GgufConfig

    assert GgufConfig(pre_tokenizer="llama-bpe").pre_tokenizer == "llama-bpe"
    with pytest.raises(ValidationError):
        GgufConfig(pre_tokenizer="qwen2'); import os; os.system('x")
