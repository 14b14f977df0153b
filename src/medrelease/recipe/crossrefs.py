"""Checks across recipe sections, after each section's own schema: names that must be stages,
and the release license. Each problem carries the line to edit and its fix.

The schema validates one section at a time (gates: does not know the stages); what one section
says about another is checked here, when the recipe is loaded, so `medrelease validate` and
every step refuse it up front instead of the step that reads it failing later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medrelease.core.errors import Problem
from medrelease.core.suggest import did_you_mean
from medrelease.recipe.licenses import LIST_URL, unknown_license
from medrelease.recipe.yamlsource import Loc

if TYPE_CHECKING:
    from medrelease.recipe.loaded import LoadedRecipe


def cross_reference_problems(loaded: LoadedRecipe) -> list[Problem]:
    return [*_stage_names(loaded), *_licenses(loaded), *_files(loaded)]


def _stage_names(loaded: LoadedRecipe) -> list[Problem]:
    recipe = loaded.recipe
    stages = list(recipe.stages)
    listed = ", ".join(stages)
    out: list[Problem] = []

    def not_a_stage(name: str, loc: tuple[str | int, ...], what: str, fix: str) -> None:
        out.append(
            Problem(
                f"{what} {name!r} is not a stage of this recipe{did_you_mean(name, stages)}",
                loaded.where(loc),
                f"{fix} (stages: {listed})",
            )
        )

    if recipe.gates is not None:
        for i, name in enumerate(recipe.gates.baselines):
            if name not in recipe.stages:
                not_a_stage(
                    name,
                    ("gates", "baselines", i),
                    "gates.baselines:",
                    "list stage names only; to compare with another model, declare it as a "
                    "stage with `reference: true`",
                )
    if recipe.card is not None:
        for key in ("stage_licenses", "stage_repos"):
            for name in getattr(recipe.card, key):
                if name not in recipe.stages:
                    not_a_stage(name, ("card", key, name), f"card.{key}:", "use a stage name")
    return out


def _licenses(loaded: LoadedRecipe) -> list[Problem]:
    """The parents' licenses the recipe declares (release.license is checked by its schema)."""
    out: list[Problem] = []
    if loaded.recipe.card is not None:
        for stage, lic in loaded.recipe.card.stage_licenses.items():
            why = unknown_license(lic)
            if why is not None:
                out.append(
                    Problem(
                        f"card.stage_licenses.{stage}: {why}",
                        loaded.where(("card", "stage_licenses", stage)),
                        f"use the id the stage's card shows (from {LIST_URL}), or `other`",
                    )
                )
    return out


def _named_files(loaded: LoadedRecipe) -> list[tuple[Loc, str, str]]:
    """(location, recipe-relative path, what it is) of every file the recipe names that a step
    reads as text, some only after hours of work (the chat template: after the merge)."""
    r = loaded.recipe
    out: list[tuple[Loc, str, str]] = []
    tmpl = r.output.chat_template
    if tmpl is not None and not isinstance(tmpl, str):
        out.append((("output", "chat_template", "file"), tmpl.file, "chat template"))
    if r.gates is not None:
        for i, task in enumerate(r.gates.tasks):
            if task.task_yaml is not None:
                out.append((("gates", "tasks", i, "task_yaml"), task.task_yaml, "task YAML"))
    q = r.quantize
    if q is not None:
        texts: list[tuple[Loc, str]] = [(("quantize", "checks", "heldout"), q.checks.heldout)]
        if q.gguf is not None and q.gguf.imatrix is not None:
            texts.append(
                (("quantize", "gguf", "imatrix", "calibration"), q.gguf.imatrix.calibration)
            )
        if q.awq is not None:
            texts.append((("quantize", "awq", "calibration"), q.awq.calibration))
        out += [(loc, name, str(loc[-1]) + " text") for loc, name in texts if name != "default"]
    card = r.card
    if card is not None:
        for key in ("template", "gguf_template", "awq_template"):
            if getattr(card, key) is not None:
                out.append((("card", key), getattr(card, key), f"card {key.replace('_', ' ')}"))
        for key in ("intended_use", "out_of_scope", "safety_notes"):
            value = getattr(card, key)
            if value is not None and not isinstance(value, str):
                out.append((("card", key, "file"), value.file, f"card.{key} text"))
        for name, value in card.blocks.items():
            if not isinstance(value, str):
                out.append((("card", "blocks", name, "file"), value.file, "card block"))
    return out


def _files(loaded: LoadedRecipe) -> list[Problem]:
    """Each named file exists and is UTF-8 (its own bad byte located at its file:line)."""
    from pathlib import Path

    from medrelease.core.errors import RecipeError
    from medrelease.recipe.yamlsource import decode_utf8

    out: list[Problem] = []
    for loc, name, what in _named_files(loaded):
        path = Path(name).expanduser()
        path = path if path.is_absolute() else loaded.base_dir / path
        if not path.is_file():
            out.append(
                Problem(
                    f"{'.'.join(map(str, loc))}: the {what} {path} does not exist",
                    loaded.where(loc),
                    "paths in a recipe are relative to the recipe file; correct the path",
                )
            )
            continue
        try:
            decode_utf8(path.read_bytes(), path)
        except RecipeError as err:
            out += [Problem(f"the {what}: {p.message}", p.where, p.hint) for p in err.problems]
        except OSError as exc:
            out.append(
                Problem(
                    f"{'.'.join(map(str, loc))}: cannot read the {what} {path}: {exc.strerror}",
                    loaded.where(loc),
                    "check the file's permissions",
                )
            )
    return out
