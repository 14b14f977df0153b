"""What the merged model is: architecture, parameter count, context length, vocabulary.

Read from the merged folder's config.json and safetensors headers (no tensor is loaded); a
card rendered where merged/ is not on disk falls back to the stages' configs the merge
recorded, and leaves out what it cannot know.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypedDict

from medrelease.core.safetensors_header import SafetensorsProblem, safetensors_headers
from medrelease.records.manifest import MergeRecord

# config.json keys that hold the trained context length, by architecture family
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


class ModelFacts(TypedDict):
    architecture: str | None  # e.g. LlamaForCausalLM
    model_type: str | None  # e.g. llama, qwen3
    parameters: int | None
    context_length: int | None
    vocab_size: int | None


def model_facts(merged: Path, merge: MergeRecord) -> ModelFacts:
    config = _config(merged) or _recorded_config(merge)
    return ModelFacts(
        architecture=next(iter(config.get("architectures") or []), None),
        model_type=config.get("model_type"),
        parameters=_parameters(merged),
        context_length=next(
            (int(config[k]) for k in _CONTEXT_KEYS if isinstance(config.get(k), int)), None
        ),
        vocab_size=config.get("vocab_size") if isinstance(config.get("vocab_size"), int) else None,
    )


def _config(merged: Path) -> dict[str, Any]:
    try:
        data = json.loads((merged / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    # multimodal configs nest the language model's settings
    text = data.get("text_config")
    return {**data, **text} if isinstance(text, dict) else data if isinstance(data, dict) else {}


def _recorded_config(merge: MergeRecord) -> dict[str, Any]:
    for stage in (merge.get("stages") or {}).values():
        if isinstance(stage.get("config"), dict):
            return dict(stage["config"])
    return {}


def _parameters(merged: Path) -> int | None:
    if not merged.is_dir():
        return None
    try:
        headers = safetensors_headers(merged)
    except (OSError, SafetensorsProblem):
        return None
    total = 0
    for header in headers.values():
        for name, entry in header.items():
            if name != "__metadata__" and isinstance(entry, dict):
                total += math.prod(int(d) for d in entry.get("shape") or [])
    return total or None
