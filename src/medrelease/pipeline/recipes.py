"""Load a recipe for a release: the schema (recipe/load.py), then the merge block's checks.

The merge block is checked against mergekit's own schema and our determinism rules by the merge
step (merge/config_check.py). That needs mergekit, so it lives above the recipe layer: here,
where the commands and the pipeline load recipes. Steps that only read a recipe (gate, card,
a cached release) pass `check_merge=False` and skip importing mergekit and torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from medrelease.recipe.load import LoadedRecipe
from medrelease.recipe.load import load_recipe as load_schema_checked


def load_recipe(
    path: str | os.PathLike[str],
    *,
    overrides: dict[str, str] | None = None,
    check_merge: bool = True,
    overlays: list[Path] | None = None,
    sets: list[str] | None = None,
) -> LoadedRecipe:
    loaded = load_schema_checked(path, overrides=overrides, overlays=overlays, sets=sets)
    if check_merge:
        from medrelease.merge.config_check import check_merge_block, check_output_block

        check_merge_block(loaded)
        check_output_block(loaded)
        if loaded.recipe.sweep is not None:  # `validate` checks the sweep section too
            from medrelease.sweep.check import check_sweep

            check_sweep(loaded)
    return loaded
