"""Materialize a LoRA/DoRA adapter stage into a full model folder with peft.

The result is exactly peft's `merge_and_unload()` of the adapter on its base stage, saved
as safetensors in the base's dtype. It is cached under `<release>/stages/<name>/` keyed by the
hashes of the adapter and base files, so re-runs reuse it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from medrelease.core.atomic import staging_dir
from medrelease.core.errors import InputError
from medrelease.core.hashing import HashCache, digest_of, folder_records
from medrelease.stages.checks import TOKENIZER_FILES
from medrelease.stages.sources import ResolvedStage

MARKER = ".medrelease-adapter.json"
TOKENIZER_EXTRA = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)


def materialize_adapter(
    stage: ResolvedStage, base: ResolvedStage, cache_root: Path, hashes: HashCache
) -> Path:
    assert stage.adapter is not None
    key = digest_of(
        {
            "adapter": folder_records(stage.adapter.path, hashes),
            "base": folder_records(base.path, hashes),
        }
    )
    final = cache_root / stage.name
    marker = final / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get("key") == key:
                return final
        except ValueError:
            pass
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(base.path), dtype="auto", use_safetensors=not base.allow_pickle or None
        )
        merged = PeftModel.from_pretrained(model, str(stage.adapter.path)).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise InputError(
            f"stage {stage.name!r}: the adapter does not apply to base {base.name!r}: "
            f"{str(exc).splitlines()[0]}",
            hint="check that the adapter was trained on this base model (same architecture)",
        ) from None
    with staging_dir(final, replace=True) as tmp:
        with torch.no_grad():
            merged.save_pretrained(str(tmp), safe_serialization=True)
        tok_src = stage.adapter.path if _has_tokenizer(stage.adapter.path) else base.path
        for name in (*TOKENIZER_FILES, *TOKENIZER_EXTRA):
            if (tok_src / name).is_file():
                shutil.copy2(tok_src / name, tmp / name)
        (tmp / MARKER).write_text(json.dumps({"key": key}))
    return final


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / t).is_file() for t in TOKENIZER_FILES)
