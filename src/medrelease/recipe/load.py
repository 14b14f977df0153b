"""Read a recipe file, validate it, and turn every problem into a located, fixable message."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from medrelease.core.errors import RecipeError
from medrelease.core.hashing import sha256_bytes
from medrelease.core.suggest import did_you_mean
from medrelease.recipe.schema import Recipe
from medrelease.recipe.stages import normalize_stage
from medrelease.recipe.yamlsource import Loc, YamlSource, load_yaml


@dataclass(frozen=True)
class LoadedRecipe:
    recipe: Recipe
    path: Path
    sha256: str
    source: YamlSource
    overrides: dict[str, str]
    changes: tuple[str, ...] = ()  # overlays and --set assignments applied, for the manifest

    @property
    def base_dir(self) -> Path:
        """Relative stage paths in the recipe are relative to the recipe file."""
        return self.path.parent

    def where(self, loc: Loc) -> str:
        return self.source.where(loc)


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


def _format_error(err: Any, source: YamlSource) -> str:
    loc = _user_loc(tuple(err["loc"]))
    where = source.where(loc)
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    etype = err["type"]
    if etype == "extra_forbidden" and loc:
        key = str(loc[-1])
        hint = did_you_mean(key, _allowed_keys(Recipe, tuple(err["loc"])))
        return f"{where}: unknown key {dotted!r}{hint}"
    if etype == "missing":
        return f"{where}: missing required key {dotted!r}"
    if etype == "union_tag_invalid" or etype == "union_tag_not_found":
        return (
            f"{where}: {dotted}: a stage is a string (local path or Hub id) or a mapping with "
            "one of 'path', 'hub' or 'adapter'"
        )
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {dotted}: {msg}"


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
        raise RecipeError(f"{p} is a folder, not a recipe file") from None
    source = load_yaml(p, raw.decode("utf-8", errors="replace"))
    if not isinstance(source.data, dict):
        raise RecipeError(
            "a recipe must be a YAML mapping with release:, stages: and merge:",
            where=f"{p}:1",
        )
    data = source.data
    changes: list[str] = []
    if overlays or sets:
        from medrelease.core.hashing import sha256_file
        from medrelease.recipe.overlay import apply_set, deep_merge, load_overlay

        for overlay in overlays or []:
            data = deep_merge(data, load_overlay(Path(overlay)))
            changes.append(f"overlay {Path(overlay).name} sha256:{sha256_file(Path(overlay))}")
        for assignment in sets or []:
            data = apply_set(data, assignment)
            changes.append(f"set {assignment}")
    data = apply_overrides(data, overrides or {}, Path.cwd())
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        # a typo shows up as "unknown key" + "missing key": report the typo first
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        problems = [_format_error(e, source) for e in errors]
        raise RecipeError(
            problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            hint="fix the recipe; `medrelease validate` lists every problem",
        ) from _ProblemList(problems)
    loaded = LoadedRecipe(
        recipe=recipe,
        path=p.resolve(),
        sha256=sha256_bytes(raw),
        source=source,
        overrides=dict(overrides or {}),
        changes=tuple(changes),
    )
    return loaded


class _ProblemList(Exception):
    """Carries every validation problem (the CLI's `validate` prints them all)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def all_problems(err: RecipeError) -> list[str]:
    cause = err.__cause__
    if isinstance(cause, _ProblemList):
        return cause.problems
    return [str(err)]
