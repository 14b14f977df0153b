"""Refuse mergekit settings whose meaning is ambiguous, so one recipe means one release.

Two kinds, both found in mergekit 0.1.5's source:

* **Keywords that collide with stage names.** Where mergekit expects a keyword it reads the
  keyword, even when the recipe has a stage of that name. The positions and words, taken from
  mergekit's own schema (`mergekit/config.py`, `mergekit/tokenizer/config.py`,
  `mergekit/merge.py`):

  - `tokenizer_source`: `base` (the base model's tokenizer, cut to its vocab size) and
    `union` (a tokenizer holding every model's tokens); any other string is a model.
    (`tokenizer_source: base` next to `base_model: base` names one model both ways: allowed.)
  - `tokenizer.source`: the same two words; `union` is its default.
  - `chat_template`: `auto` (the most common template among the models) and the names of the
    templates shipped with mergekit (`alpaca`, `chatml`, `exaone`, `llama3`, `mistral`);
    anything else must be Jinja text. It never names a model, so a stage name there is a
    mistake either way.

  (A token's embedding source under `tokenizer.tokens` is a model name or a mapping with
  `kind:`; the `kind` words never stand where a stage name could.)

* **Choices that depend on "the base" when there is none.** mergekit resolves the base of
  `tokenizer_source: base|union` (and of a `tokenizer:` block) as `base_model`, or else the
  first element of an unordered set of models: the published `mergekit_config.yml` would
  give a different tokenizer (and embedding rows) from run to run. medrelease itself takes
  the first model the recipe names (determinism.py), but the recipe must say it.

Checks that need the stages' files (`chat_template: auto` with a tie) run at merge time.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from medrelease.core.errors import RecipeError
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.yamlsource import Loc


def _literal_words(annotation: Any) -> list[str]:
    words: list[str] = []
    if typing.get_origin(annotation) is typing.Literal:
        return [a for a in typing.get_args(annotation) if isinstance(a, str)]
    for arg in typing.get_args(annotation):
        words += [w for w in _literal_words(arg) if w not in words]
    return words


def tokenizer_keywords() -> dict[Loc, list[str]]:
    """Where mergekit reads a tokenizer keyword, and which words (from its pydantic schema)."""
    from mergekit.config import MergeConfiguration
    from mergekit.tokenizer.config import TokenizerConfig

    return {
        ("tokenizer_source",): _literal_words(
            MergeConfiguration.model_fields["tokenizer_source"].annotation
        ),
        ("tokenizer", "source"): _literal_words(TokenizerConfig.model_fields["source"].annotation),
    }


def chat_template_names() -> list[str]:
    """`auto` plus the template names mergekit ships (mergekit/_data/chat_templates/*.jinja)."""
    import importlib.resources

    from mergekit._data import chat_templates

    shipped = sorted(
        p.name.removesuffix(".jinja")
        for p in importlib.resources.files(chat_templates).iterdir()
        if p.name.endswith(".jinja")
    )
    return ["auto", *shipped]


def _tokenizer_source(merge: dict[str, Any]) -> tuple[Loc, Any] | None:
    """Where the merge asks mergekit to build a tokenizer, and from what (None: it copies one)."""
    if merge.get("tokenizer_source") is not None:
        return ("tokenizer_source",), merge["tokenizer_source"]
    tok = merge.get("tokenizer")
    if isinstance(tok, dict):
        if "source" in tok:
            return ("tokenizer", "source"), tok["source"]
        return ("tokenizer",), "union"  # mergekit's default source
    return None


def check_unambiguous(loaded: LoadedRecipe) -> None:
    """Raise RecipeError (exit 2) at the line of the first ambiguous setting."""
    merge = loaded.recipe.merge
    stages = set(loaded.recipe.stages)

    def fail(loc: Loc, message: str, hint: str) -> RecipeError:
        return RecipeError(message, where=loaded.where(("merge", *loc)), hint=hint)

    for loc, words in tokenizer_keywords().items():
        node: Any = merge
        for part in loc:
            node = node.get(part) if isinstance(node, dict) else None
        # `tokenizer_source: base` with `base_model: base` means that stage either way
        same = node == "base" and merge.get("base_model") == "base"
        if isinstance(node, str) and node in words and node in stages and not same:
            key = ".".join(map(str, loc))
            raise fail(
                loc,
                f"{key}: {node!r} is both mergekit's keyword here ("
                + ("the base model's tokenizer" if node == "base" else "every model's tokens")
                + ") and a stage of this recipe; mergekit reads the keyword",
                f"rename stage {node!r} (e.g. to '{node}_stage') everywhere in the recipe, then "
                f"write `{key}: {node}_stage` for that stage's tokenizer or keep "
                f"`{key}: {node}` for the keyword",
            )

    template = merge.get("chat_template")
    if isinstance(template, str) and template in stages:
        raise fail(
            ("chat_template",),
            f"chat_template: {template!r} is a stage of this recipe, but mergekit reads "
            f"chat_template as a template name ({', '.join(chat_template_names())}) or Jinja "
            "text, never as a model",
            "to ship a stage's chat template, set `output.tokenizer_from: "
            f"{template}`; or set `output.chat_template` to the template text",
        )

    source = _tokenizer_source(merge)
    if source is not None and merge.get("base_model") is None:
        loc, value = source
        if isinstance(value, str) and value in ("base", "union"):
            first = _first_model(merge)
            what = (
                "the tokenizer of the base model"
                if value == "base"
                else "a union tokenizer that starts from the base model's vocabulary"
            )
            raise fail(
                loc,
                f"tokenizer source {value!r} without merge.base_model: mergekit builds {what}, "
                "and without a base_model it takes an arbitrary model (the order of a set, "
                "different from process to process), so the same recipe gives different "
                "tokenizers",
                f"add `base_model: {first or '<stage>'}` to merge: (a model of the merge; "
                "for linear it only chooses whose config and tokenizer the output starts "
                "from), or name the stage: `tokenizer_source: "
                f"{first or '<stage>'}`",
            )


def _first_model(merge: dict[str, Any]) -> str | None:
    from medrelease.recipe.merge_refs import merge_stage_names

    names = merge_stage_names(merge)
    return names[0] if names else None


def check_auto_chat_template(loaded: LoadedRecipe, folders: dict[str, Path]) -> None:
    """`chat_template: auto` picks the most common template; a tie is broken by set order."""
    merge = loaded.recipe.merge
    if merge.get("chat_template") != "auto":
        return
    from collections import Counter

    from medrelease.recipe.merge_refs import merge_stage_names

    templates: dict[str, str] = {}
    for name in merge_stage_names(merge):
        if name in folders:
            text = stage_chat_template(folders[name])
            if text:
                templates[name] = text.strip()
    counts = Counter(templates.values()).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        tied = [n for n, t in templates.items() if templates[n] in (counts[0][0], counts[1][0])]
        raise RecipeError(
            "chat_template: auto finds no most common template: stages "
            f"{', '.join(tied)} have different templates, as many times each, and mergekit "
            "breaks the tie by set order (different from process to process)",
            where=loaded.where(("merge", "chat_template")),
            hint="name the template: `chat_template: chatml` (or other mergekit name), or set "
            "output.chat_template / output.tokenizer_from",
        )


def stage_chat_template(folder: Path) -> str | None:
    """A model folder's chat template as transformers reads it, without loading a tokenizer."""
    import json

    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    for name, key in (("tokenizer_config.json", "chat_template"), ("chat_template.json", None)):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        value = data.get(key or "chat_template") if isinstance(data, dict) else None
        if isinstance(value, list):  # named templates: transformers uses "default"
            value = next(
                (
                    t.get("template")
                    for t in value
                    if isinstance(t, dict) and t.get("name") == "default"
                ),
                None,
            )
        if isinstance(value, str):
            return value
    return None
