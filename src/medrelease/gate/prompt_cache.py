"""A prompt's template compiled, and its tokens computed, once per process instead of once per use.

lm-eval builds every request anew on every evaluation, and a sweep evaluates the same search
items for every trial (a gate, the same items for the candidate and each baseline):

* `lm_eval.utils.apply_template` compiles its Jinja template on every call (lm-eval issue
  #1286, open). A 5-shot MMLU request renders six documents, so 123 items took 1.5 s of
  compiling per evaluation against 0.02 s of rendering. `compile_templates_once` keeps the
  compiled templates (same environment, same template text: the same strings).
* lm-eval's hf backend encodes each request's context and context + continuation with the
  tokenizer on every evaluation (0.4-0.7 s per trial for those items). `Encodings` keeps the
  token ids per tokenizer content, so a tokenizer with the same files gives the ids it gave.
* and it loads the tokenizer again for every model (0.15 s for SmolLM2's): `TOKENIZERS` keeps
  the few last ones lm-eval built, by the same content key, and hands them to the next model
  built on the same files (lm-eval's own way: its `tokenizer=` argument takes an object).
"""

from __future__ import annotations

import functools
import hashlib
from array import array
from pathlib import Path
from typing import Any

from medrelease.stages.adapters import TOKENIZER_EXTRA
from medrelease.stages.checks import TOKENIZER_FILES

TEMPLATES_KEPT = 1024  # distinct template strings (a task has a few; a process, a few hundred)
TOKENS_KEPT = 16_000_000  # token ids kept over all tokenizers (64 MB); later strings are encoded


def compile_templates_once() -> None:
    """lm-eval's `apply_template` with its compiled templates kept (idempotent)."""
    import lm_eval.utils as lm_utils

    if getattr(lm_utils.apply_template, "medrelease_compiled", False):
        return
    compiled = functools.lru_cache(maxsize=TEMPLATES_KEPT)(lm_utils.env.from_string)

    def apply_template(template: str, doc: dict[str, Any]) -> str:
        return str(compiled(template).render(**doc))

    apply_template.medrelease_compiled = True  # type: ignore[attr-defined]
    lm_utils.apply_template = apply_template


class Encodings:
    """Token ids by (tokenizer content, encoding options, text); bounded by TOKENS_KEPT."""

    def __init__(self, limit: int = TOKENS_KEPT):
        self._ids: dict[bytes, array[int]] = {}
        self._tokens = 0
        self._limit = limit

    def get_or_encode(self, key: tuple[Any, ...], text: str, encode: Any) -> list[int]:
        digest = hashlib.blake2b(repr(key).encode() + b"\0" + text.encode(), digest_size=16)
        k = digest.digest()
        hit = self._ids.get(k)
        if hit is not None:
            return hit.tolist()  # a new list: a caller may change it
        ids = list(encode())
        if self._tokens + len(ids) <= self._limit:
            self._ids[k] = array("i", ids)
            self._tokens += len(ids)
        return ids


ENCODINGS = Encodings()


class KeptTokenizers:
    """The last few tokenizers lm-eval built, by tokenizer content key."""

    def __init__(self, size: int = 4):
        self._kept: dict[str, Any] = {}
        self._size = size

    def get(self, key: str | None) -> Any:
        return self._kept.get(key) if key is not None else None

    def put(self, key: str | None, tokenizer: Any) -> None:
        if key is None or tokenizer is None:
            return
        self._kept.pop(key, None)
        self._kept[key] = tokenizer
        while len(self._kept) > self._size:
            self._kept.pop(next(iter(self._kept)))


TOKENIZERS = KeptTokenizers()

# what makes two folders' tokenizers the same: every file the tokenizer is loaded from, and the
# model's config (lm-eval's pad and prefix token fall back to it)
_TOKENIZER_INPUTS = (*TOKENIZER_FILES, *TOKENIZER_EXTRA, "vocab.txt", "config.json")


def tokenizer_content_key(folder: Path, model_args: dict[str, Any]) -> str | None:
    """A digest of what the hf backend's tokenizer for `folder` is built from, or None where it
    comes from elsewhere (`tokenizer=` in model_args, or a Hub id): no sharing then."""
    if "tokenizer" in model_args or not folder.is_dir():
        return None
    h = hashlib.sha256(repr(sorted((k, repr(v)) for k, v in model_args.items())).encode())
    for name in _TOKENIZER_INPUTS:
        path = folder / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
