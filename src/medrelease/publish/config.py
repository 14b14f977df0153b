"""The `publish:` section of a recipe (owned by the publish step)."""

from __future__ import annotations

from medrelease.recipe.base import Section


class PublishConfig(Section):
    tag: str = "v{version}"
