"""Change a recipe without editing it: overlay files and `--set path=value`.

Used to run a real release recipe on stand-in checkpoints in CI (tiny local evaluation data,
relaxed rules), or to try a variation locally:

    medrelease release merges/x.yaml --stage base=./tiny/base \\
        --overlay ci/standins.yaml --set gates.tasks.0.limit=8 --set seed=7

An overlay is a YAML mapping deep-merged over the recipe: mappings merge key by key, any other
value (lists included) replaces the recipe's, and `null` removes a key. Relative paths in an
overlay are taken as the overlay's author wrote them: relative to the recipe file.
`--set` takes a dotted path (list items by index) and a YAML value.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from medrelease.core.errors import RecipeError
from medrelease.recipe.yamlsource import Places, YamlSource


def deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = deep_merge(base.get(key), value)
        return out
    return copy.deepcopy(over)


def load_overlay(path: Path) -> YamlSource:
    from medrelease.recipe.yamlsource import load_yaml

    source = load_yaml(path)
    if not isinstance(source.data, dict):
        raise RecipeError(
            f"overlay {path} must be a YAML mapping",
            where=f"{path}:1",
            hint="write the keys to change as in the recipe, e.g. `gates: {data_dir: ./tiny}`",
        )
    return source


def overlay_places(places: Places, source: YamlSource) -> None:
    """Point the values an overlay gave at the overlay's lines: a mapping merges key by key
    (the recipe's other keys keep their lines), anything else replaces the recipe's value."""
    for loc in sorted(source.lines, key=len):
        if not loc:
            continue
        node: Any = source.data
        for part in loc:
            node = node[part]
        origin = f"{source.path}:{source.lines[loc]}"
        if isinstance(node, dict):
            places.at.setdefault(loc, origin)
        else:
            places.replaced(loc, origin)


SET_HINT = "e.g. --set gates.tasks.0.limit=8 (a dotted path, list items by index, then =YAML)"


def set_loc(assignment: str) -> tuple[str | int, ...]:
    """The recipe location an assignment replaces (list indexes as ints)."""
    path = assignment.partition("=")[0]
    return tuple(int(p) if p.isdigit() else p for p in path.split("."))


def apply_set(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise RecipeError(f"--set {assignment!r} is not PATH=VALUE", hint=SET_HINT)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        raise RecipeError(
            f"--set {assignment!r}: the value is not valid YAML ({exc})",
            hint="quote the value in the shell, e.g. --set 'release.description=\"a: b\"'",
        ) from None
    out = copy.deepcopy(data)
    node: Any = out
    parts = path.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                top = f"0..{len(node) - 1}" if node else "none: the list is empty"
                raise RecipeError(
                    f"--set {path}: {where} is not an index of a list of {len(node)} item(s)",
                    hint=f"use an index of {'.'.join(parts[:i])} ({top}), or set the whole "
                    f"list: --set '{'.'.join(parts[:i])}=[...]'",
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            above = ".".join(parts[:i])
            raise RecipeError(
                f"--set {path}: {above} is not a mapping or a list (it is {node!r})",
                hint=f"set {above} itself: --set '{above}=VALUE'",
            )
    return out
