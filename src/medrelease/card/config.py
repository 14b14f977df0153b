"""The `card:` section of a recipe (owned by the card step)."""

from __future__ import annotations

from medrelease.recipe.base import Section


class CardConfig(Section):
    template: str | None = None
