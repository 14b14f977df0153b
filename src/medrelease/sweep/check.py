"""The `sweep:` section against the rest of the recipe, with file and line: every search-space
path exists in the merge block and its range stays in the parameter's domain, every objective
and constraint is on a searched gate task, and the search items are disjoint from the gate's.

Runs before anything is merged or evaluated (`medrelease sweep` exits 2 here)."""

from __future__ import annotations

from typing import Any

from medrelease.core.errors import RecipeError
from medrelease.core.suggest import did_you_mean
from medrelease.gate.config import GateRule, GatesConfig
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.sweep.config import SpaceParam, SweepConfig

# mergekit methods that merge the same `models:` list -> whether they need a `base_model`
# (one table, so a method's name and its requirement cannot drift apart)
NEEDS_BASE_BY_METHOD = {
    "linear": False,
    "ties": True,
    "dare_ties": True,
    "dare_linear": True,
    "della": True,
    "della_linear": True,
    "task_arithmetic": True,
    "breadcrumbs": True,
    "breadcrumbs_ties": True,
    "sce": True,
    "slerp": True,
    "nuslerp": False,
    "arcee_fusion": True,
    "karcher": False,
    "model_stock": True,
}
METHODS = tuple(NEEDS_BASE_BY_METHOD)
NEEDS_BASE = {m for m, needs in NEEDS_BASE_BY_METHOD.items() if needs}

# (low bound, low inclusive, high bound, high inclusive) of mergekit's parameters, by name
DOMAINS: dict[str, tuple[float, bool, float, bool]] = {
    "density": (0.0, False, 1.0, True),
    "epsilon": (0.0, True, 1.0, False),
    "t": (0.0, True, 1.0, True),
    "lambda": (0.0, True, float("inf"), False),
    "weight": (0.0, True, float("inf"), False),
}


def sweep_of(loaded: LoadedRecipe) -> SweepConfig:
    sweep = loaded.recipe.sweep
    if sweep is None:
        raise RecipeError(
            "the recipe has no `sweep:` section",
            where=str(loaded.path),
            hint="add one (search space, objectives, search split); see docs/sweep.md",
        )
    return sweep


def check_sweep(loaded: LoadedRecipe) -> SweepConfig:
    """The section, checked against the merge block and the gates (RecipeError, exit 2)."""
    sweep = sweep_of(loaded)
    gates = loaded.recipe.gates
    if gates is None or not gates.tasks:
        raise RecipeError(
            "a sweep evaluates through the gate: the recipe has no `gates.tasks`",
            where=str(loaded.path),
            hint="add a gates: section; the sweep's objectives are its metrics",
        )
    for i, param in enumerate(sweep.space):
        _check_param(loaded, param, ("sweep", "space", i))
    _check_search(loaded, sweep, gates)
    labels = [t.label for t in gates.tasks]
    for i, obj in enumerate(sweep.objectives):
        _check_task(loaded, obj.task, labels, sweep, ("sweep", "objectives", i, "metric"))
    rules: list[tuple[GateRule, tuple[Any, ...]]] = [
        (r, ("sweep", "extra_constraints", i)) for i, r in enumerate(sweep.extra_constraints)
    ]
    if sweep.constraints == "gates":
        rules = [(r, ("gates", "rules", i)) for i, r in enumerate(gates.rules)] + rules
    for rule, loc in rules:
        _check_task(loaded, rule.task, labels, sweep, (*loc, "metric"))
        if rule.vs is not None and rule.vs not in gates.baselines:
            raise RecipeError(
                f"constraint on {rule.metric!r}: {rule.vs!r} is not in gates.baselines",
                where=loaded.where(loc),
                hint="compare with a stage listed in gates.baselines",
            )
    return sweep


def _check_task(
    loaded: LoadedRecipe, task: str, labels: list[str], sweep: SweepConfig, loc: tuple[Any, ...]
) -> None:
    if task not in labels:
        raise RecipeError(
            f"no gate task named {task!r} computes this metric{did_you_mean(task, labels)}",
            where=loaded.where(loc),
            hint=f"gate tasks: {', '.join(labels)}",
        )
    if task not in sweep.search:
        raise RecipeError(
            f"task {task!r} is used by the sweep but has no search items",
            where=loaded.where(loc),
            hint=f"add `{task}: {{start: ..., count: ...}}` under sweep.search"
            + (" (or set `sweep.constraints: none`)" if loc[0] == "gates" else ""),
        )


def _check_search(loaded: LoadedRecipe, sweep: SweepConfig, gates: GatesConfig) -> None:
    """Every searched task is a gate task, and its search items are none of the gate's."""
    from medrelease.sweep.split import plan_search

    labels = [t.label for t in gates.tasks]
    for label in sweep.search:
        if label not in labels:
            raise RecipeError(
                f"sweep.search names {label!r}, which is not a gate task"
                f"{did_you_mean(label, labels)}",
                where=loaded.where(("sweep", "search", label)),
                hint=f"gate tasks: {', '.join(labels)}",
            )
    plan_search(loaded, sweep, gates)


def _node(merge: dict[str, Any], parts: list[str]) -> tuple[bool, Any]:
    node: Any = merge
    for part in parts:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False, None
    return True, node


def _check_param(loaded: LoadedRecipe, param: SpaceParam, loc: tuple[Any, ...]) -> None:
    merge = loaded.recipe.merge
    parts = param.path.split(".")
    found, value = _node(merge, parts)
    where = loaded.where((*loc, "path"))
    if not found:
        # the longest prefix that exists, to say where the path went wrong
        ok = 0
        while ok < len(parts) and _node(merge, parts[: ok + 1])[0]:
            ok += 1
        _, parent = _node(merge, parts[:ok])
        keys = list(parent) if isinstance(parent, dict) else []
        raise RecipeError(
            f"search-space path {param.path!r} is not in the merge block: "
            f"{'.'.join(parts[: ok + 1])!r} does not exist{did_you_mean(parts[ok], keys)}",
            where=where,
            hint="a path names an existing value of `merge:` (list items by index), e.g. "
            "models.0.parameters.weight; give the value a starting point there first",
        )
    if isinstance(value, (dict, list)):
        raise RecipeError(
            f"search-space path {param.path!r} names a {type(value).__name__}, not a value",
            where=where,
            hint="name one number (a list item by its index) or the merge_method",
        )
    if param.path == "merge_method":
        _check_methods(loaded, param, loc)
        return
    if param.choices is not None:
        return
    key = next((p for p in reversed(parts) if not p.isdigit()), "")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise RecipeError(
            f"search-space path {param.path!r} holds {value!r}, not a number, but is given a range",
            where=where,
            hint="give `choices:` for a non-numeric value",
        )
    domain = DOMAINS.get(key)
    if domain is None:
        return
    lo, lo_inc, hi, hi_inc = domain
    assert param.low is not None and param.high is not None
    if key == "weight" and param.allow_negative:
        lo, lo_inc = float("-inf"), False
    bad_low = param.low < lo or (param.low == lo and not lo_inc)
    bad_high = param.high > hi or (param.high == hi and not hi_inc)
    if bad_low or bad_high:
        span = f"{'[' if lo_inc else '('}{lo:g}, {hi:g}{']' if hi_inc else ')'}"
        hint = f"keep low and high within {span}"
        if key == "weight" and param.low < 0:
            hint += "; a negative weight (subtracting a model) needs `allow_negative: true`"
        raise RecipeError(
            f"range [{param.low:g}, {param.high:g}] of {param.path!r} leaves {key}'s domain {span}",
            where=loaded.where((*loc, "low" if bad_low else "high")),
            hint=hint,
        )


def _check_methods(loaded: LoadedRecipe, param: SpaceParam, loc: tuple[Any, ...]) -> None:
    merge = loaded.recipe.merge
    for j, method in enumerate(param.choices or []):
        cloc = loaded.where((*loc, "choices", j))
        if method not in METHODS:
            raise RecipeError(
                f"merge_method choice {method!r} is not a method the sweep can swap in"
                f"{did_you_mean(str(method), METHODS)}",
                where=cloc,
                hint=f"methods that merge the same models: list: {', '.join(METHODS)}",
            )
        if method in NEEDS_BASE and not merge.get("base_model"):
            raise RecipeError(
                f"merge_method choice {method!r} needs `base_model` in the merge block",
                where=cloc,
                hint="add base_model: <stage> to `merge:` or drop this choice",
            )
        if method in ("slerp", "nuslerp") and len(merge.get("models") or []) != 2:
            raise RecipeError(
                f"merge_method choice {method!r} merges exactly two models",
                where=cloc,
                hint="drop this choice, or list two models",
            )
