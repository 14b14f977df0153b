"""The text behind a tokenization probe's ids, so a card discloses what differs in words.

The quantize record keeps each differing probe's first token ids (merged tokenizer vs the
quant's runtime). Looked up in the merged model's `tokenizer.json`, they become token pieces
(`▁leading`, `<s>`) and a decoded text: a reader sees where the runtimes split differently.
Without merged/ on disk the card shows the ids alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def token_reader(merged: Path | None) -> tuple[Callable[[list[int]], list[str]], Any] | None:
    """(ids -> token pieces, the tokenizer) from merged/tokenizer.json, or None."""
    if merged is None or not (merged / "tokenizer.json").is_file():
        return None
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(merged / "tokenizer.json"))
    except Exception:  # a tokenizer.json tokenizers cannot read: the ids alone are shown
        return None

    def pieces(ids: list[int]) -> list[str]:
        return [tok.id_to_token(i) or f"<{i}>" for i in ids]

    return pieces, tok


def decoded(tok: Any, ids: list[int]) -> str | None:
    try:
        return str(tok.decode(ids, skip_special_tokens=False))
    except Exception:  # an id outside the vocabulary
        return None
