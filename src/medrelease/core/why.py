"""Say what changed between the components a step ran with and its components now.

A step's record keeps its components as data, not only as digests (core/inputs.py): the
recipe's sections it reads, each stage's identity, each referenced file's digest, each
upstream step's outputs digest, each tool's version. So `status` can name the change
("recipe: merge.models.0.parameters.weight 0.5 -> 0.4 (--set on the command line)",
"stages: sft content changed", "upstream: gate outputs changed") instead of "recipe".

Every reason starts with the component's name and a colon, so a reader (or a test) that only
wants which component changed takes the text before the first colon.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

MAX_DETAILS = 3  # per component; the rest is counted ("and 2 more")
MAX_VALUE = 48  # characters of a value shown

# how each component names what its keys are
_KEY_WORDS = {
    "stages": "content changed",
    "baselines": "content changed",
    "files": "changed",
    "eval_files": "changed",
    "templates": "template changed",
    "upstream": "outputs changed",
}


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a digest
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key path, old value, new value) of every leaf that differs; list items are
    addressed by index, as `--set` addresses them (`gates.rules.3.min`)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[str, Any, Any]] = []
        for k in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{k}" if prefix else str(k)
            if k not in old:
                out.append((path, None, new[k]))
            elif k not in new:
                out.append((path, old[k], None))
            else:
                out.extend(changed_paths(old[k], new[k], path))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out.extend(changed_paths(a, b, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return [] if old == new else [(prefix, old, new)]


def set_paths(changes: Sequence[str]) -> list[str]:
    """The recipe paths `--set PATH=VALUE` assignments changed (from LoadedRecipe.changes)."""
    return [c.removeprefix("set ").partition("=")[0] for c in changes if c.startswith("set ")]


def _covers(set_path: str, path: str) -> bool:
    return path == set_path or path.startswith(set_path + ".") or set_path.startswith(path + ".")


def _origin(path: str, now: Sequence[str], then: Sequence[str]) -> str:
    if any(_covers(p, path) for p in now):
        return " (--set on the command line)"
    if any(_covers(p, path) for p in then):
        return " (was --set on the command line)"
    return ""


def explain(
    name: str,
    old: Any,
    new: Any,
    *,
    sets_now: Sequence[str] = (),
    sets_then: Sequence[str] = (),
) -> str:
    """One reason: `<component>: <what changed>`."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        if isinstance(old, str) and isinstance(new, dict):
            return f"{name}: changed (recorded by an older medrelease, without details)"
        return f"{name}: {_short(old)} → {_short(new)}"
    diffs = changed_paths(old, new)
    parts: list[str] = []
    for path, a, b in diffs[:MAX_DETAILS]:
        if name in _KEY_WORDS:
            what = "added" if a is None else "removed" if b is None else _KEY_WORDS[name]
            if name in ("stages", "baselines") and "@" in str(a) + str(b):
                what = f"{_short(a)} → {_short(b)}"  # Hub stages: id@commit
            parts.append(f"{path} {what}")  # these components are flat: the key is a name
        else:
            origin = _origin(path, sets_now, sets_then) if name == "recipe" else ""
            parts.append(f"{path} {_short(a)} → {_short(b)}{origin}")
    if len(diffs) > MAX_DETAILS:
        parts.append(f"and {len(diffs) - MAX_DETAILS} more")
    return f"{name}: " + ("; ".join(parts) or "changed")
