"""Check a recipe's `merge:` block against mergekit's own schema before anything runs.

mergekit silently ignores unknown keys, so a typo such as `paramaters:` or `densty:` merges
with defaults and nobody notices. We walk the block against mergekit's pydantic models and
the chosen method's declared parameters, and report the exact line with a suggestion.
Stage names used as models are checked here too: every model must be a declared stage, so the
manifest can say where each input came from.
"""

from __future__ import annotations

import typing
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from medrelease.core.errors import RecipeError
from medrelease.core.heap import torch_huge_pages
from medrelease.core.suggest import did_you_mean
from medrelease.merge.generation_keys import (
    GENERATION_HINT,
    known_generation_keys,
    unknown_generation_keys,
)
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.merge_refs import model_refs
from medrelease.recipe.yamlsource import Loc


def _model_classes(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_model_classes(arg))
    return found


def _container_kind(annotation: Any) -> str | None:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return "list"
    if origin is dict:
        return "dict"
    for arg in typing.get_args(annotation):
        kind = _container_kind(arg)
        if kind:
            return kind
    return None


def _unknown_keys(model: type[BaseModel], value: Any, loc: Loc, out: list[tuple[Loc, str]]) -> None:
    if not isinstance(value, dict):
        return
    fields = model.model_fields
    for key, sub in value.items():
        if key not in fields:
            out.append(((*loc, key), did_you_mean(str(key), set(fields))))
            continue
        if key == "parameters":  # free-form in the schema; checked against the method below
            continue
        ann = fields[key].annotation
        classes = [c for c in _model_classes(ann) if c.__name__ != "ModelReference"]
        if not classes:
            continue
        kind = _container_kind(ann)
        if kind == "list" and isinstance(sub, list):
            for i, item in enumerate(sub):
                _unknown_keys(classes[0], item, (*loc, key, i), out)
        elif kind == "dict" and isinstance(sub, dict):
            for k, item in sub.items():
                _unknown_keys(classes[0], item, (*loc, key, k), out)
        elif isinstance(sub, dict):
            _unknown_keys(classes[0], sub, (*loc, key), out)


def resolve_merge_config(merge: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    """A copy of the merge block with stage names replaced by checkpoint paths."""
    import copy

    out = copy.deepcopy(merge)
    for loc, name in model_refs(merge):
        node: Any = out
        for part in loc[:-1]:
            node = node[part]
        node[loc[-1]] = paths[name]
    return out


def _parameter_names(merge: dict[str, Any]) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []

    def params(block: Any, loc: Loc) -> None:
        if isinstance(block, dict) and isinstance(block.get("parameters"), dict):
            for k in block["parameters"]:
                found.append(((*loc, "parameters", k), str(k)))

    params(merge, ())
    for i, m in enumerate(merge.get("models") or []):
        params(m, ("models", i))
    for i, s in enumerate(merge.get("slices") or []):
        params(s, ("slices", i))
        for j, src in enumerate((s or {}).get("sources") or [] if isinstance(s, dict) else []):
            params(src, ("slices", i, "sources", j))
    return found


class Fail(Protocol):
    """Builds the RecipeError for a place in the merge block (`loc` is relative to merge:)."""

    def __call__(self, loc: Loc, message: str, hint: str | None = None) -> RecipeError: ...


def check_merge_block(loaded: LoadedRecipe) -> None:
    """Every check of the merge block, cheapest and most specific first, so that a typo is
    reported as a typo before mergekit's own validation sees the block."""
    recipe = loaded.recipe
    merge = recipe.merge

    def fail(loc: Loc, message: str, hint: str | None = None) -> RecipeError:
        return RecipeError(message, where=loaded.where(("merge", *loc)), hint=hint)

    # importing mergekit makes torch's first allocation in this process, which settles whether
    # torch backs large tensors with huge pages: on, for the merge that follows (core/heap.py)
    with torch_huge_pages():
        _check_known_keys(merge, fail)
    method = _merge_method(merge, fail)
    _check_stage_refs(loaded, fail)
    _check_parameter_names(method, merge, fail)
    _check_required_parameters(method, merge, fail)

    from medrelease.merge.ambiguity import check_unambiguous

    check_unambiguous(loaded)  # keywords that collide with stage names; base-less choices
    _check_mergekit_accepts(merge, fail)
    _check_model_ids(method, merge, fail)
    _check_weights_normalise(method, merge, fail)


def _check_known_keys(merge: dict[str, Any], fail: Fail) -> None:
    """mergekit ignores keys its schema does not have, so a typo would merge with defaults."""
    from mergekit.config import MergeConfiguration

    unknown: list[tuple[Loc, str]] = []
    _unknown_keys(MergeConfiguration, merge, (), unknown)
    if unknown:
        loc, suggestion = unknown[0]
        raise fail(
            loc,
            f"unknown key 'merge.{'.'.join(map(str, loc))}' (mergekit would silently ignore it)"
            f"{suggestion}",
            hint="remove or correct the key",
        )


def _merge_method(merge: dict[str, Any], fail: Fail) -> Any:
    """The mergekit method the block names (its registry entry), or a RecipeError."""
    from mergekit.merge_methods import registry

    method_name = merge.get("merge_method")
    if not isinstance(method_name, str):
        raise fail((), "merge.merge_method is required", hint="e.g. merge_method: ties")
    methods = {m.spec.name: m for m in registry.registered_methods()}
    if method_name not in methods:
        raise fail(
            ("merge_method",),
            f"unknown merge method {method_name!r}{did_you_mean(method_name, set(methods))}",
            hint=f"mergekit {_mergekit_version()} knows: {', '.join(sorted(methods))}",
        )
    return methods[method_name]


def _check_stage_refs(loaded: LoadedRecipe, fail: Fail) -> None:
    """Every model the merge uses is a declared stage (so the manifest can say where each
    input came from), and none is a reference model, which only the gates compare against."""
    recipe = loaded.recipe
    stages = set(recipe.stages)
    for loc, name in model_refs(recipe.merge):
        if name not in stages:
            raise fail(
                loc,
                f"{name!r} is not a stage of this recipe{did_you_mean(name, stages)}",
                hint="declare every model the merge uses under stages: and refer to it by name",
            )
        if recipe.stages[name].reference:
            raise fail(
                loc,
                f"stage {name!r} is a reference model (`reference: true`): it is compared "
                "against in the gates, never merged",
                hint=f"drop `reference: true` from stage {name!r}, or merge another stage",
            )


def _check_parameter_names(method: Any, merge: dict[str, Any], fail: Fail) -> None:
    """`parameters:` are free-form in mergekit's schema: only the method's own names count."""
    known_params = {p.name for p in method.spec.parameters}
    for loc, pname in _parameter_names(merge):
        if pname not in known_params:
            raise fail(
                loc,
                f"merge method {method.spec.name!r} has no parameter {pname!r}"
                f"{did_you_mean(pname, known_params)}",
                hint=f"its parameters are: {', '.join(sorted(known_params)) or '(none)'}",
            )


def _check_mergekit_accepts(merge: dict[str, Any], fail: Fail) -> None:
    """mergekit's own validation, for whatever our specific checks above do not name."""
    from mergekit.config import MergeConfiguration

    try:
        MergeConfiguration.model_validate(merge)
    except (ValidationError, RuntimeError, ValueError) as exc:
        raise fail((), f"mergekit rejects the merge block: {_first_line(exc)}") from None


def _check_model_ids(method: Any, merge: dict[str, Any], fail: Fail) -> None:
    """The method's contract on its inputs (how many models, whether it needs a base)."""
    models = [m.get("model") for m in (merge.get("models") or []) if isinstance(m, dict)]
    if not models:
        return
    uses_base = method.spec.contract.base.value != "ignored"
    base = merge.get("base_model")
    if base is not None and base not in models and uses_base:
        # mergekit adds the base to the inputs itself when it is not listed
        models = [*models, base]
    try:
        method.spec.contract.validate_ids(models, base if uses_base else None)
    except ValueError as exc:
        raise fail(
            ("models",),
            f"merge method {method.spec.name!r}: {_first_line(exc)}",
            hint="check base_model and the models list for this method",
        ) from None


def _check_required_parameters(method: Any, merge: dict[str, Any], fail: Fail) -> None:
    """mergekit only notices a missing required parameter mid-merge; catch it up front."""
    top = merge.get("parameters") or {}
    for spec in method.spec.parameters:
        if not spec.required or spec.name in top:
            continue
        if spec.scope.value == "shared":
            raise fail(
                ("parameters",),
                f"merge method {method.spec.name!r} needs parameter {spec.name!r}",
                hint=f"add `parameters: {{{spec.name}: ...}}` to merge:",
            )
        base = merge.get("base_model")
        for i, m in enumerate(merge.get("models") or []):
            if not isinstance(m, dict):
                continue
            if spec.scope.value == "non_base" and m.get("model") == base:
                continue
            if spec.name not in (m.get("parameters") or {}):
                raise fail(
                    ("models", i),
                    f"model {m.get('model')!r} has no {spec.name!r}, which merge method "
                    f"{method.spec.name!r} requires",
                    hint=f"set `parameters: {{{spec.name}: ...}}` on each model or under merge:",
                )


# Methods that divide by the sum of their weights without a `normalize` switch (nuslerp: t is
# weight[1] / sum, silently 0.5 when the sum is 0)
ALWAYS_NORMALISE = frozenset({"nuslerp"})
NORMALISE_SWITCHES = ("normalize", "normalize_weights")


def _check_weights_normalise(method: Any, merge: dict[str, Any], fail: Fail) -> None:
    """Weights that sum to 0 cannot be normalised: linear then divides by 0 (NaN weights, found
    only by the merged model's checks), the task-arithmetic family silently skips normalising,
    nuslerp silently takes t = 0.5. Scalar weights (and gradients of equal length) are known
    here; per-tensor filters are left to mergekit."""
    params = {p.name: p for p in method.spec.parameters}
    if "weight" not in params:
        return
    shared: dict[str, Any] = merge.get("parameters") or {}
    if not isinstance(shared, dict):
        return  # mergekit's own schema check has refused it
    switch = next((n for n in NORMALISE_SWITCHES if n in params), None)
    if switch is not None:
        on = shared.get(switch, params[switch].default)
        if on is not True:
            return
    elif method.spec.name not in ALWAYS_NORMALISE:
        return
    base = merge.get("base_model")
    skip_base = params["weight"].scope.value == "non_base"
    groups: list[tuple[Loc, list[Any]]] = [(("models",), list(merge.get("models") or []))]
    for i, s in enumerate(merge.get("slices") or []):
        if isinstance(s, dict):
            groups.append((("slices", i, "sources"), list(s.get("sources") or [])))
    for loc, entries in groups:
        weights: list[tuple[str, Any]] = []
        for m in entries:
            if not isinstance(m, dict) or (skip_base and m.get("model") == base):
                continue
            own: dict[str, Any] = m.get("parameters") or {}
            if not isinstance(own, dict):
                return
            weights.append((str(m.get("model")), own.get("weight", shared.get("weight"))))
        sums = _weight_sums([w for _, w in weights])
        if sums is None or not any(abs(x) < 1e-8 for x in sums):
            continue
        listed = ", ".join(f"{name} {w}" for name, w in weights)
        where = "at some layers " if len(sums) > 1 and not all(abs(x) < 1e-8 for x in sums) else ""
        raise fail(
            loc,
            f"the weights of merge method {method.spec.name!r} sum to 0 {where}({listed}), so "
            "they cannot be normalised"
            + (f" ({switch}: true divides by their sum)" if switch else ""),
            hint="change the weights so that they do not sum to 0"
            + (f", or set `parameters: {{{switch}: false}}` under merge:" if switch else ""),
        )


def _weight_sums(weights: list[Any]) -> list[float] | None:
    """Sum of the weights at each gradient point (scalars count everywhere), or None when a
    weight is not a plain number or list of numbers (then mergekit has the last word)."""
    if not weights:
        return None
    lengths = {len(w) for w in weights if isinstance(w, list)}
    if len(lengths) > 1:
        return None
    n = lengths.pop() if lengths else 1
    sums = [0.0] * n
    for w in weights:
        values = w if isinstance(w, list) else [w] * n
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return None
            sums[i] += float(v)
    return sums


def check_output_block(loaded: LoadedRecipe) -> None:
    """Decoding settings must be real GenerationConfig fields (a typo would be ignored)."""
    gen = loaded.recipe.output.generation_config or {}
    unknown = unknown_generation_keys(gen) if gen else []
    if unknown:
        key = unknown[0]
        raise RecipeError(
            f"output.generation_config: unknown decoding setting {key!r}"
            f"{did_you_mean(key, known_generation_keys())}",
            where=loaded.where(("output", "generation_config", key)),
            hint=GENERATION_HINT,
        )


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        e = exc.errors()[0]
        return f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
    return str(exc).strip().splitlines()[0]


def _mergekit_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mergekit")
    except metadata.PackageNotFoundError:
        return "?"
