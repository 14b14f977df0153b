"""Which stages a recipe's `merge:` block names, and where: read by the merge, the card
(lineage) and the release's inputs alike, without importing mergekit."""

from __future__ import annotations

from typing import Any

from medrelease.recipe.yamlsource import Loc

# Keys of mergekit's config whose values name a model.
TOKENIZER_KEYWORDS = ("union", "base")


def model_refs(merge: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Every place in a mergekit config that names a model, with its location."""
    refs: list[tuple[Loc, str]] = []

    def ref(loc: Loc, value: Any) -> None:
        if isinstance(value, str):
            refs.append((loc, value))
        elif isinstance(value, dict) and isinstance(value.get("model"), str):
            refs.append(((*loc, "model"), value["model"]))

    def models_and_slices(block: dict[str, Any], loc: Loc) -> None:
        for i, m in enumerate(block.get("models") or []):
            if isinstance(m, dict):
                ref((*loc, "models", i, "model"), m.get("model"))
        for i, s in enumerate(block.get("slices") or []):
            if not isinstance(s, dict):
                continue
            if s.get("base_model") is not None:
                ref((*loc, "slices", i, "base_model"), s["base_model"])
            for j, src in enumerate(s.get("sources") or []):
                if isinstance(src, dict):
                    ref((*loc, "slices", i, "sources", j, "model"), src.get("model"))

    if merge.get("base_model") is not None:
        ref(("base_model",), merge["base_model"])
    models_and_slices(merge, ())
    for name, module in (merge.get("modules") or {}).items():
        if isinstance(module, dict):
            models_and_slices(module, ("modules", name))
    ts = merge.get("tokenizer_source")
    if isinstance(ts, str) and ts not in TOKENIZER_KEYWORDS:
        ref(("tokenizer_source",), ts)
    tok = merge.get("tokenizer")
    if isinstance(tok, dict):
        src = tok.get("source")
        if isinstance(src, str) and src not in TOKENIZER_KEYWORDS:
            ref(("tokenizer", "source"), src)
        tokens = tok.get("tokens")
        for token, emb in tokens.items() if isinstance(tokens, dict) else ():
            # a token's embedding source: a model name, or {kind: model_token, model: ...}
            if isinstance(emb, dict) and emb.get("source") is not None:
                ref(("tokenizer", "tokens", token, "source"), emb["source"])
    return refs


def merge_stage_names(merge: dict[str, Any]) -> list[str]:
    """Stage names the merge uses, in first-use order."""
    seen: list[str] = []
    for _, name in model_refs(merge):
        if name not in seen:
            seen.append(name)
    return seen
