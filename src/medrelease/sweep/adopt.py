"""`--adopt TRIAL`: the recipe with the trial's values written into its merge block.

The edit is at text level, scalar by scalar: each searched value is replaced where it stands
(its exact character span from the YAML parser), so comments, order, quoting and flow style of
the rest of the file stay as the author wrote them. The result is parsed again and must equal
the recipe with the trial's merge block, or nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from medrelease.core.atomic import atomic_write_text
from medrelease.core.errors import RecipeError, UsageError
from medrelease.sweep.space import apply_params


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # round-trips exactly: the adopted merge is the trial's, bit for bit
    if isinstance(value, int):
        return str(value)
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _value_node(root: yaml.Node, loc: tuple[str | int, ...]) -> yaml.Node | None:
    node: yaml.Node | None = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            return None
    return node


def adopted_text(text: str, params: dict[str, Any]) -> str:
    """`text` (a recipe) with merge.<path> set to each value of `params`."""
    root = yaml.compose(text)
    if root is None:
        raise RecipeError("the recipe is empty")
    spans: list[tuple[int, int, str]] = []
    for path, value in params.items():
        loc = ("merge", *(int(p) if p.isdigit() else p for p in path.split(".")))
        node = _value_node(root, loc)
        if not isinstance(node, yaml.ScalarNode):
            raise RecipeError(
                f"cannot find the value of merge.{path} in the recipe text",
                hint="the recipe changed since the sweep ran; re-run the sweep on it",
            )
        spans.append((node.start_mark.index, node.end_mark.index, _scalar_text(value)))
    out = text
    for start, end, new in sorted(spans, reverse=True):
        out = out[:start] + new + out[end:]
    data = yaml.safe_load(text)
    expected = {**data, "merge": apply_params(data["merge"], params)}
    if yaml.safe_load(out) != expected:
        raise RecipeError(
            "rewriting the merge block in place did not give the trial's merge block",
            hint="report this; meanwhile copy the trial's parameters from sweep/report.json",
        )
    return out


def adopt(recipe_path: Path, report: dict[str, Any], trial: int, out: Path | None) -> Path:
    entries = {t["number"]: t for t in report["trials"]}
    entry = entries.get(trial)
    if entry is None:
        raise UsageError(
            f"trial {trial} is not in the sweep report",
            hint=f"trials: {min(entries)}..{max(entries)}" if entries else "run the sweep first",
        )
    if entry["state"] != "complete":
        raise UsageError(
            f"trial {trial} is {entry['state']}, not complete: it has no full evaluation",
            hint=f"adopt a complete trial, e.g. the best: {report.get('best')}",
        )
    text = recipe_path.read_text(encoding="utf-8")
    new = adopted_text(text, entry["params"])
    target = out or recipe_path
    atomic_write_text(target, new)
    return target
