"""check_vocabulary's rules on hand-built GGUF views (no llama.cpp run): each rule's exact
message, in the order a report lists them. tests/quantize/test_gguf_contents.py and
test_isolation.py check the same rules on GGUFs llama.cpp's converter really wrote."""

from __future__ import annotations

import json
from pathlib import Path

from medrelease.quantize.gguf.contents import (
    TOKEN_TYPE_BYTE,
    UTF8_BYTES,
    GgufView,
    check_vocabulary,
)

BYTES = [f"<0x{b:02X}>" for b in range(256)]
NORMAL = 1  # gguf.TokenType.NORMAL


def _merged(folder: Path, spec: dict[str, object], eos: int | None = None) -> Path:
    folder.mkdir()
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    (folder / "config.json").write_text(json.dumps({"eos_token_id": eos}))
    return folder


def _sentencepiece(folder: Path, eos: int | None = None) -> Path:
    vocab = {t: i for i, t in enumerate([*BYTES, "a"])}
    spec = {"model": {"type": "BPE", "byte_fallback": True, "vocab": vocab}}
    return _merged(folder, spec, eos)


def _view(model: str, tokens: list[str], types: list[int]) -> GgufView:
    return GgufView({"tokenizer.ggml.model": model}, {}, tokens, types)


def test_a_sound_sentencepiece_vocabulary_passes(tmp_path):
    merged = _sentencepiece(tmp_path / "m", eos=256)
    view = _view("llama", [*BYTES, "a"], [TOKEN_TYPE_BYTE] * 256 + [NORMAL])
    result = check_vocabulary(view, merged)
    assert result == {
        "ok": True,
        "detail": "tokenizer model 'llama' fits the merged SentencePiece BPE; 256 <0x..> byte "
        "tokens in place; BOS/EOS ids and texts agree",
        "gguf_model": "llama",
        "hf_kind": "SentencePiece BPE",
    }


def test_byte_and_special_token_problems_in_report_order(tmp_path):
    merged = _sentencepiece(tmp_path / "m", eos=256)
    tokens = [*BYTES, "b"]
    tokens[0x42] = "x"  # <0x42> gone: llama.cpp has no token for byte B
    types = [TOKEN_TYPE_BYTE] * 256 + [NORMAL]
    types[0x41] = NORMAL  # <0x41> present but not typed as a byte
    result = check_vocabulary(_view("llama", tokens, types), merged)
    assert result["ok"] is False
    assert result["problems"] == [
        f"the GGUF's SentencePiece vocabulary has a token for {len(UTF8_BYTES) - 1} of the "
        f"{len(UTF8_BYTES)} bytes UTF-8 text can contain: llama.cpp aborts "
        "(std::out_of_range in byte_to_token) on text with the others",
        "1 byte token(s) of the merged vocabulary are not in the GGUF at their ids: <0x42>",
        "1 byte token(s) are not marked as byte tokens in the GGUF: <0x41>",
        "special token texts differ (id merged vs GGUF): 256 'a' vs 'b'",
    ]
    assert "hint" not in result


def test_another_tokenizer_model_gets_the_generic_hint(tmp_path):
    merged = _sentencepiece(tmp_path / "m")
    view = _view("gpt2", [*BYTES, "a"], [TOKEN_TYPE_BYTE] * 256 + [NORMAL])
    result = check_vocabulary(view, merged)
    assert result["problems"] == [
        "the GGUF's tokenizer model is 'gpt2' but the merged tokenizer is a SentencePiece BPE "
        "(llama.cpp needs 'llama')"
    ]
    assert result["hint"].startswith("check which tokenizer file the converter used")
    assert result["detail"].endswith(f" (fix: {result['hint']})")


def test_byte_level_bpe_read_as_sentencepiece_names_byte_fallback(tmp_path):
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    spec = {
        "model": {"type": "BPE", "byte_fallback": True, "vocab": vocab},
        "pre_tokenizer": {"type": "ByteLevel"},
    }
    merged = _merged(tmp_path / "m", spec)
    result = check_vocabulary(_view("llama", alphabet, [NORMAL] * 256), merged)
    printable = sum(1 for b in UTF8_BYTES if b < 128 and chr(b) in alphabet)
    assert result["problems"] == [
        "the GGUF's tokenizer model is 'llama' but the merged tokenizer is a byte-level BPE "
        "(llama.cpp needs 'gpt2'): tokenizer.json's BPE model says byte_fallback: true (as "
        "transformers writes when it converts a GGUF tokenizer), so llama.cpp's converter "
        "read it as a SentencePiece vocabulary",
        f"the GGUF's SentencePiece vocabulary has a token for {printable} of the "
        f"{len(UTF8_BYTES)} bytes UTF-8 text can contain: llama.cpp aborts "
        "(std::out_of_range in byte_to_token) on text with the others",
    ]
    assert result["hint"].startswith("write a clean tokenizer.json: set model.byte_fallback")
    assert result["hf_kind"] == "byte-level BPE"
