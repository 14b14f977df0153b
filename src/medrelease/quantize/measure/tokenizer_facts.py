"""What the GGUF checks need to know of the merged HF tokenizer, as plain data.

Loading a transformers tokenizer imports torch (half a gigabyte of resident memory before any
weight). A GGUF release's checks only need a handful of facts from it: the probe ids, the
special tokens, the chat template, the vocabulary and the stop check's prompt. They are taken
once, in the short-lived child that also tokenizes the held-out text and runs the conversion
check (quantize/measure/hf_side.py), and read here as JSON: the quantize process itself never
imports torch for GGUFs, so its memory stays beside llama.cpp's rather than on top of it. The
same facts are built in process (`of`) wherever a tokenizer is loaded anyway (AWQ, tests).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from medrelease.quantize.texts import PROBE_CHAT, PROBE_TEXTS

FACTS_FILE = "tokenizer-facts.json"


@dataclass
class TokenizerFacts:
    bos_token_id: int | None
    eos_token_id: int | None
    chat_template: str | None
    # probe name -> (text, add special tokens?) and the merged tokenizer's ids for it
    probes: dict[str, tuple[str, bool]]
    probe_ids: dict[str, list[int]]
    vocab: dict[str, int]  # get_vocab(): the model's vocabulary and the added tokens
    spec: str | None  # the backend tokenizer's JSON (tokenizer.json's content), when fast
    # output.stop_check's prompt as the chat template renders it (None: no stop check)
    stop_prompt_ids: list[int] | None = None

    @classmethod
    def of(cls, tokenizer: Any, stop_prompt: str | None = None) -> TokenizerFacts:
        """The facts of a loaded transformers tokenizer."""
        from medrelease.checks.stops import chat_prompt_ids

        probes = probe_texts(tokenizer)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        return cls(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            chat_template=getattr(tokenizer, "chat_template", None) or None,
            probes=probes,
            probe_ids=probe_ids(tokenizer, probes),
            vocab={str(k): int(v) for k, v in tokenizer.get_vocab().items()},
            spec=backend.to_str() if backend is not None else None,
            stop_prompt_ids=None
            if stop_prompt is None
            else chat_prompt_ids(tokenizer, stop_prompt),
        )

    def save(self, folder: Path) -> None:
        from medrelease.core.atomic import atomic_write_text

        atomic_write_text(folder / FACTS_FILE, json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: Path) -> TokenizerFacts:
        data = json.loads((folder / FACTS_FILE).read_text(encoding="utf-8"))
        data["probes"] = {k: (str(t), bool(a)) for k, (t, a) in data["probes"].items()}
        return cls(**data)

    @cached_property
    def _backend(self) -> Any:
        from tokenizers import Tokenizer  # Rust tokenizers alone: no torch

        return Tokenizer.from_str(self.spec) if self.spec else None

    def decode(self, ids: list[int]) -> str:
        """`ids` as text (for messages); the ids themselves when there is no fast tokenizer."""
        backend = self._backend
        return str(backend.decode(ids, skip_special_tokens=False)) if backend else str(ids)


def probe_texts(tokenizer: Any) -> dict[str, tuple[str, bool]]:
    """probe name -> (text, add special tokens?): the fixed texts (quantize/texts.py), the
    special tokens in running text, and the chat template's rendering of a short chat."""
    out = {f"text{i}": (t, True) for i, t in enumerate(PROBE_TEXTS)}
    specials = [t for t in (tokenizer.bos_token, tokenizer.eos_token) if t]
    if specials:
        out["special_tokens"] = (f"{specials[0]}Hello {specials[-1]} world", False)
    if getattr(tokenizer, "chat_template", None):
        chat = tokenizer.apply_chat_template(
            list(PROBE_CHAT), tokenize=False, add_generation_prompt=True
        )
        out["chat_template"] = (str(chat), False)
    return out


def probe_ids(
    tokenizer: Any, probes: dict[str, tuple[str, bool]] | None = None
) -> dict[str, list[int]]:
    """What a transformers tokenizer makes of each probe: the reference for every runtime."""
    probes = probe_texts(tokenizer) if probes is None else probes
    return {
        name: [int(i) for i in tokenizer(text, add_special_tokens=add)["input_ids"]]
        for name, (text, add) in probes.items()
    }
