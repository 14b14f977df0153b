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

if TYPE_CHECKING:
    from medrelease.recipe.load import LoadedRecipe


def cross_reference_problems(loaded: LoadedRecipe) -> list[Problem]:
    return [*_stage_names(loaded), *_licenses(loaded)]


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
