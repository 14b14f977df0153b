"""The `gates:` section of a recipe (owned by the gate step)."""

from __future__ import annotations

from typing import Any

from medrelease.recipe.base import Section


class GatesConfig(Section):
    tasks: list[Any] = []
    baselines: list[str] = []
    rules: list[dict[str, Any]] = []
