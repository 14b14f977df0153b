"""Errors of the card step: each names the template (or recipe key) and line to fix."""

from __future__ import annotations

from medrelease.core.errors import InputError, RecipeError


class CardTemplateError(RecipeError):
    """A card template (shipped, from the recipe, or a block override) cannot be rendered."""

    kind = "template"


class LicenseConflict(InputError):
    """A parent's license is incompatible with (or unknown against) the release license."""

    kind = "license"
