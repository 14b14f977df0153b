"""The search space as Optuna distributions, and a trial's point written into the merge block."""

from __future__ import annotations

import copy
from typing import Any

from medrelease.sweep.config import SpaceParam, SweepConfig


def distributions(sweep: SweepConfig) -> dict[str, Any]:
    """Optuna distribution per parameter name (the dotted path)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for p in sweep.space:
        if p.choices is not None:
            out[p.name] = CategoricalDistribution(p.choices)
            continue
        assert p.low is not None and p.high is not None
        if p.int:
            step = int(p.step) if p.step else 1
            out[p.name] = IntDistribution(int(p.low), int(p.high), log=p.log, step=step)
        else:
            out[p.name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


def grid(sweep: SweepConfig) -> dict[str, list[Any]]:
    """Every value of each parameter, for the grid sampler (ranges need a step)."""
    out: dict[str, list[Any]] = {}
    for p in sweep.space:
        out[p.name] = list(p.choices) if p.choices is not None else _range_values(p)
    return out


def _range_values(p: SpaceParam) -> list[Any]:
    assert p.low is not None and p.high is not None
    step = p.step or 1.0
    n = round((p.high - p.low) / step) + 1
    values = [p.low + k * step for k in range(n) if p.low + k * step <= p.high + 1e-12]
    # rounded to the step's precision: 0.1 + 2 * 0.1 is 0.30000000000000004
    digits = max(0, len(repr(step).split(".")[-1])) if "." in repr(step) else 0
    return [int(v) if p.int else round(v, digits + 2) for v in values]


def apply_params(merge: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of the merge block with each searched path set to the trial's value."""
    out = copy.deepcopy(merge)
    for path, value in params.items():
        node: Any = out
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return out
