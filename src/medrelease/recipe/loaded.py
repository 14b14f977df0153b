"""A recipe as loaded: the validated schema, where it came from, and where each value was set.

Its own module, below both the loader (recipe/load.py) and the checks the loader runs
(recipe/crossrefs.py), so neither imports the other for the type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medrelease.recipe.schema import Recipe
from medrelease.recipe.yamlsource import Loc, Places, YamlSource


@dataclass(frozen=True)
class LoadedRecipe:
    recipe: Recipe
    path: Path
    sha256: str
    source: YamlSource
    overrides: dict[str, str]
    changes: tuple[str, ...] = ()  # overlays and --set assignments applied, for the manifest
    places: Places | None = None  # where each value came from (recipe line or --set)

    @property
    def base_dir(self) -> Path:
        """Relative stage paths in the recipe are relative to the recipe file."""
        return self.path.parent

    def where(self, loc: Loc) -> str:
        """`file:line` of the value at `loc`, or the `--set` that gave it."""
        return self.places.where(loc) if self.places is not None else self.source.where(loc)
