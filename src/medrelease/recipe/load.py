"""Read a recipe file, validate it, and turn every problem into a located, fixable message."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from medrelease.core.errors import Problem, RecipeError
from medrelease.core.hashing import sha256_bytes
from medrelease.core.suggest import did_you_mean
from medrelease.recipe.crossrefs import cross_reference_problems
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.schema import Recipe
from medrelease.recipe.stages import normalize_stage
from medrelease.recipe.yamlsource import Loc, Places, decode_utf8, load_yaml


def _allowed_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names valid at `loc` inside `model` (best effort, for did-you-mean)."""
    cls: Any = model
    for i, part in enumerate(loc[:-1]):
        if isinstance(part, int) or cls is None:
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            if i == 2 and loc[0] == "stages" and part in STAGE_KINDS:  # union tag
                from medrelease.recipe import stages

                cls = {
                    "local": stages.LocalStage,
                    "hub": stages.HubStage,
                    "adapter": stages.AdapterStage,
                }[part]
            continue
        cls = _model_in(field.annotation)
    return sorted(getattr(cls, "model_fields", {}) or {})


def _model_in(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


STAGE_KINDS = ("local", "hub", "adapter")


def _user_loc(raw: tuple[Any, ...]) -> Loc:
    """pydantic puts the discriminated union's tag into the location of stage errors
    (`stages.sft.local.path`); users wrote `stages.sft.path`."""
    if len(raw) >= 3 and raw[0] == "stages" and raw[2] in STAGE_KINDS:
        return (*raw[:2], *raw[3:])
    return tuple(raw)


def _problem(err: Any, where: Any) -> Problem:
    """One pydantic error as a located problem with its fix."""
    loc = _user_loc(tuple(err["loc"]))
    at = where(loc)
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    etype = err["type"]
    if etype == "extra_forbidden" and loc:
        key = str(loc[-1])
        hint = did_you_mean(key, _allowed_keys(Recipe, tuple(err["loc"])))
        return Problem(
            f"unknown key {dotted!r}{hint}",
            at,
            "correct the key's spelling or remove it (unknown keys are errors everywhere)",
        )
    if etype == "missing":
        return Problem(f"missing required key {dotted!r}", at, f"add `{loc[-1]}:` there")
    if etype == "union_tag_invalid" or etype == "union_tag_not_found":
        return Problem(
            f"{dotted}: a stage is a string (local path or Hub id) or a mapping with "
            "one of 'path', 'hub' or 'adapter'",
            at,
            "e.g. `sft: ./checkpoints/sft` or `sft: {path: ./checkpoints/sft, parent: base}`",
        )
    msg = str(err["msg"]).removeprefix("Value error, ")
    fix = (err.get("ctx") or {}).get("fix")  # our validators' PydanticCustomError carry one
    if fix:
        return Problem(f"{dotted}: {msg}", at, str(fix))
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    if etype.endswith("_type") or etype.endswith("_parsing") or etype.startswith("literal"):
        msg += shown
    return Problem(f"{dotted}: {msg}", at, "correct the value (see docs/CONTRACTS.md for the key)")


def apply_overrides(data: Any, overrides: dict[str, str], cwd: Path) -> Any:
    """Replace stage sources (keeping parent/description): the stand-in mechanism for tests/CI.

    An override value is a Hub id[@rev] or a local path; relative paths are taken from the
    current directory (where the user typed them), not from the recipe's folder.
    """
    if not overrides:
        return data
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        return data
    stages = dict(data["stages"])
    for name, value in overrides.items():
        if name not in stages:
            raise RecipeError(
                f"--stage {name}=...: {name!r} is not a stage of this recipe"
                + did_you_mean(name, set(stages)),
                hint=f"stages are: {', '.join(stages)}",
            )
        old = normalize_stage(stages[name])
        keep = {k: old[k] for k in ("parent", "description") if isinstance(old, dict) and k in old}
        if value.startswith((".", "/", "~")) or (cwd / value).is_dir():
            value = str((cwd / os.path.expanduser(value)).resolve())
        new = normalize_stage(value)
        if isinstance(old, dict) and old.get("kind") == "adapter" and new.get("kind") == "local":
            new = {"kind": "adapter", "adapter": new["path"], "base": old["base"]}
        stages[name] = {**new, **keep}
    return {**data, "stages": stages}


def load_recipe(
    path: str | os.PathLike[str],
    *,
    overrides: dict[str, str] | None = None,
    overlays: list[Path] | None = None,
    sets: list[str] | None = None,
) -> LoadedRecipe:
    """Read and validate the recipe against its schema. The merge block's mergekit check (it
    imports mergekit and the merge step) is added one layer up: medrelease.pipeline.recipes."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise RecipeError(
            f"recipe file {p} does not exist", hint="check the path; recipes live in merges/"
        ) from None
    except IsADirectoryError:
        raise RecipeError(
            f"{p} is a folder, not a recipe file",
            hint=f"name the recipe YAML file, e.g. {_example_in(p)}",
        ) from None
    source = load_yaml(p, decode_utf8(raw, p))
    if not isinstance(source.data, dict):
        what = "empty" if source.data is None else f"a YAML {type(source.data).__name__}"
        raise RecipeError(
            f"the recipe is {what}: a recipe is a YAML mapping with release:, stages: and merge:",
            where=f"{p}:1",
            hint="start from a recipe in merges/ or the example in README.md (The recipe)",
        )
    data = source.data
    places = Places.of(source)
    changes: list[str] = []
    if overlays or sets:
        from medrelease.core.hashing import sha256_file
        from medrelease.recipe.overlay import (
            apply_set,
            deep_merge,
            load_overlay,
            overlay_places,
            set_loc,
        )

        for overlay in overlays or []:
            over = load_overlay(Path(overlay))
            data = deep_merge(data, over.data)
            overlay_places(places, over)
            changes.append(f"overlay {Path(overlay).name} sha256:{sha256_file(Path(overlay))}")
        for assignment in sets or []:
            data = apply_set(data, assignment)
            places.replaced(set_loc(assignment), f"--set {assignment}")
            changes.append(f"set {assignment}")
    data = apply_overrides(data, overrides or {}, Path.cwd())
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        # a typo shows up as "unknown key" + "missing key": report the typo first
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        problems = list(dict.fromkeys(_problem(e, places.where) for e in errors))
        raise RecipeError.several(
            problems, what=f"problems in {p}", hint="fix each problem listed, then run it again"
        ) from None
    loaded = LoadedRecipe(
        recipe=recipe,
        path=p.resolve(),
        sha256=sha256_bytes(raw),
        source=source,
        overrides=dict(overrides or {}),
        changes=tuple(changes),
        places=places,
    )
    problems = cross_reference_problems(loaded)
    if problems:
        raise RecipeError.several(
            problems, what=f"problems in {p}", hint="fix each problem listed, then run it again"
        )
    return loaded


def _example_in(folder: Path) -> str:
    found = sorted(folder.glob("*.yaml"))[:1]
    return str(found[0]) if found else "merges/my-release.yaml"
