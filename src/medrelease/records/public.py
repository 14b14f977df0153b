"""The release record as the public sees it: no path of the machine that made it.

`manifest.json` records where each local stage was read from (`steps.merge.stages.*.source`)
and the recipe's `--set` overrides, as absolute paths of the publisher's machine. The copy that
is published keeps what a reader can use: a relative path as the recipe wrote it, a Hub stage's
id (its revision is recorded beside it), or `local checkpoint` for a folder only the publisher
has (its files' sha256 stay recorded, so the stage is still identified by content).
"""

from __future__ import annotations

import copy
import re
from typing import Any

LOCAL = "local checkpoint"
# /abs/path, ~/path, C:\path or C:/path, file:// URLs
_ABSOLUTE = re.compile(r"^(?:/|~[/\\]|[A-Za-z]:[/\\]|file://)")


def is_local_path(value: object) -> bool:
    return isinstance(value, str) and bool(_ABSOLUTE.match(value))


def public_manifest_data(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of the manifest's data with every machine-local path replaced."""
    out = copy.deepcopy(data)
    recipe = out.get("recipe")
    if isinstance(recipe, dict):
        if recipe.get("path"):  # the file name, not the publisher's folders
            recipe["path"] = re.split(r"[/\\]", str(recipe["path"]))[-1]
        overrides = recipe.get("overrides")
        if isinstance(overrides, dict):
            recipe["overrides"] = {
                k: LOCAL if is_local_path(v) else v for k, v in overrides.items()
            }
    return _scrub(out)


def _scrub(value: Any) -> Any:
    """Any other absolute path left in the record (a stage source, a gate model source)."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return LOCAL if is_local_path(value) else value
