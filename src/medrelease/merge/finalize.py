"""Make the merged folder a model a user can run as intended: tokenizer, chat template,
recommended decoding, and special token ids that agree everywhere.

mergekit copies the base model's tokenizer but not its generation_config, and a merge of an
instruct model and a base model easily ends up with the base's EOS: generation then never
stops. We set the ids from the tokenizer the release ships, in config.json and
generation_config.json alike, and keep every EOS token any merged stage declares (a
multi-token list such as [<|endoftext|>, <|im_end|>] survives whichever stage mergekit took
generation_config.json from); verify.py's "stops" check holds the output to that.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from medrelease.core.errors import RecipeError
from medrelease.merge.generation_keys import GENERATION_HINT, unknown_generation_keys
from medrelease.stages.adapters import TOKENIZER_EXTRA
from medrelease.stages.checks import TOKENIZER_FILES

MERGEKIT_README = "README.md"


def replace_tokenizer(out: Path, source: Path) -> None:
    for name in (*TOKENIZER_FILES, *TOKENIZER_EXTRA):
        if (out / name).is_file():
            (out / name).unlink()
    for name in (*TOKENIZER_FILES, *TOKENIZER_EXTRA):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)


def _as_list(v: Any) -> list[int]:
    if v is None:
        return []
    return [int(x) for x in v] if isinstance(v, list) else [int(v)]


def finalize_output(
    out: Path,
    *,
    chat_template: str | None,
    generation: dict[str, Any] | None,
    generation_base: Path | None,
    tokenizer_source: Path | None,
    eos_from: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Apply the recipe's output settings in place; return what was set (for the manifest).

    `eos_from` (stage name -> folder, the merged stages): every EOS token their
    generation_configs declare is kept in the output's list (matched by token text, so a
    tokenizer with other ids still gets the right ones), whichever stage mergekit copied
    generation_config.json from.

    Order matters: the tokenizer the release ships is settled first, because its special ids
    are what generation_config.json and config.json are then made to agree with.
    """
    tok, applied = _finalize_tokenizer(out, chat_template, tokenizer_source)
    gen, kept = _generation_config(out, tok, generation, generation_base, eos_from or {})
    if kept:
        applied["eos_kept_from_stages"] = {str(i): src for i, src in kept.items()}
    gen.save_pretrained(str(out))
    applied["generation_config"] = gen.to_diff_dict()
    _write_config_ids(out / "config.json", tok)
    # mergekit writes its own model card; ours is rendered by `medrelease card`
    (out / MERGEKIT_README).unlink(missing_ok=True)
    return applied


def _finalize_tokenizer(
    out: Path, chat_template: str | None, tokenizer_source: Path | None
) -> tuple[Any, dict[str, Any]]:
    """Install the recipe's tokenizer and chat template; (the saved tokenizer, what was set)."""
    from transformers import AutoTokenizer

    if tokenizer_source is not None:
        replace_tokenizer(out, tokenizer_source)
    tok = AutoTokenizer.from_pretrained(str(out))
    applied: dict[str, Any] = {}
    if chat_template is not None:
        tok.chat_template = chat_template
        applied["chat_template"] = "recipe"
    elif getattr(tok, "chat_template", None):
        applied["chat_template"] = "inherited"
    tok.save_pretrained(str(out))
    return tok, applied


def _generation_config(
    out: Path,
    tok: Any,
    generation: dict[str, Any] | None,
    generation_base: Path | None,
    eos_from: dict[str, Path],
) -> tuple[Any, dict[int, str]]:
    """The output's GenerationConfig, validated but not saved, and the EOS ids kept from the
    stages (id -> stage). Starts from mergekit's copy, else the base stage's, else defaults."""
    from transformers import GenerationConfig

    if (out / "generation_config.json").is_file():
        gen = GenerationConfig.from_pretrained(str(out))
    elif generation_base is not None and (generation_base / "generation_config.json").is_file():
        gen = GenerationConfig.from_pretrained(str(generation_base))
    else:
        gen = GenerationConfig()
    if generation:
        unknown = unknown_generation_keys(generation)
        if unknown:
            raise RecipeError(
                f"output.generation_config: unknown decoding setting(s) {', '.join(unknown)}",
                hint=GENERATION_HINT,
            )
        gen.update(**generation)
    # an eos_token_id the recipe sets is the release's explicit choice: nothing is added
    explicit = bool(generation and "eos_token_id" in generation)
    kept = _set_special_ids(gen, tok, {} if explicit else eos_from)
    try:
        gen.validate(strict=True)
    except ValueError as exc:
        raise RecipeError(
            f"output.generation_config is inconsistent: {str(exc).splitlines()[0]}",
            hint="e.g. temperature/top_p only apply with do_sample: true",
        ) from None
    return gen, kept


def _set_special_ids(gen: Any, tok: Any, eos_from: dict[str, Path]) -> dict[int, str]:
    """The tokenizer's EOS first in the EOS list, then the stages' EOS tokens it lacks (what
    makes generation stop whichever stage's config mergekit copied); BOS and PAD from the
    tokenizer. Returns the ids added from the stages."""
    eos_ids = _as_list(gen.eos_token_id)
    if tok.eos_token_id is not None and tok.eos_token_id not in eos_ids:
        eos_ids = [tok.eos_token_id, *eos_ids]
    kept = _stage_eos_ids(tok, eos_from, eos_ids)
    eos_ids = [*eos_ids, *kept]
    gen.eos_token_id = eos_ids[0] if len(eos_ids) == 1 else eos_ids
    if tok.bos_token_id is not None:
        gen.bos_token_id = tok.bos_token_id
    if tok.pad_token_id is not None:
        gen.pad_token_id = tok.pad_token_id
    return kept


def _write_config_ids(cfg_path: Path, tok: Any) -> None:
    """config.json's EOS/BOS/PAD ids (text_config's for a multimodal config) = the tokenizer's."""
    cfg = json.loads(cfg_path.read_text())
    target = cfg["text_config"] if isinstance(cfg.get("text_config"), dict) else cfg
    for key, value in (
        ("eos_token_id", tok.eos_token_id),
        ("bos_token_id", tok.bos_token_id),
        ("pad_token_id", tok.pad_token_id),
    ):
        if value is None:
            continue
        if key == "eos_token_id" and value in _as_list(target.get(key)):
            continue  # a list that already contains it (instruct models list several)
        target[key] = value
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _stage_eos_ids(tok: Any, folders: dict[str, Path], have: list[int]) -> dict[int, str]:
    """EOS ids the stages declare that `have` lacks, in the output tokenizer's ids."""
    from medrelease.checks.stops import declared_eos_tokens, token_id

    extra: dict[int, str] = {}
    for d in declared_eos_tokens(folders):
        new_id = token_id(tok, d.text)
        if new_id is not None and new_id not in have and new_id not in extra:
            extra[new_id] = d.source
    return extra
