"""Load a recipe for a release: the schema (recipe/load.py), then the checks that need a step's
own knowledge: the merge block against mergekit, and the gate rules against the metrics their
tasks compute.

The merge block is checked against mergekit's own schema and our determinism rules by the merge
step (merge/config_check.py). That needs mergekit, so it lives above the recipe layer: here,
where the commands and the pipeline load recipes. Steps that only read a recipe (gate, card,
a cached release) pass `check_merge=False` and skip importing mergekit and torch.
Every problem found is reported together (one error listing each, with its line and fix).
"""

from __future__ import annotations

import os
from pathlib import Path

from medrelease.core.errors import Problem, RecipeError
from medrelease.recipe.load import load_recipe as load_schema_checked
from medrelease.recipe.loaded import LoadedRecipe


def load_recipe(
    path: str | os.PathLike[str],
    *,
    overrides: dict[str, str] | None = None,
    check_merge: bool = True,
    check_gates: bool | None = None,
    overlays: list[Path] | None = None,
    sets: list[str] | None = None,
) -> LoadedRecipe:
    """`check_gates` (default: as `check_merge`): gate rules name metrics their tasks compute
    (reads the task YAMLs with lm-eval's loader, ~1 s)."""
    loaded = load_schema_checked(path, overrides=overrides, overlays=overlays, sets=sets)
    problems: list[Problem] = []
    if check_merge:
        from medrelease.merge.config_check import check_merge_block, check_output_block

        for check in (check_merge_block, check_output_block, _check_sweep):
            try:
                check(loaded)
            except RecipeError as err:
                problems.extend(err.problems)
    if check_merge if check_gates is None else check_gates:
        from medrelease.gate.metric_names import preset_data_problems, rule_metric_problems

        problems += rule_metric_problems(loaded) + preset_data_problems(loaded)
    if problems:
        raise RecipeError.several(
            problems,
            what=f"problems in {path}",
            hint="fix each problem listed, then run it again",
        )
    return loaded


def _check_sweep(loaded: LoadedRecipe) -> None:
    if loaded.recipe.sweep is not None:  # `validate` checks the sweep section too
        from medrelease.sweep.check import check_sweep

        check_sweep(loaded)
