"""The `quantize:` section of a recipe (owned by the quantize step)."""

from __future__ import annotations

from typing import Any

from medrelease.recipe.base import Section


class QuantizeConfig(Section):
    gguf: list[str] = []
    awq: dict[str, Any] | None = None
