"""Where units of work run: in this process (`local`, the default) or on a Ray cluster (`ray`).

A unit is one independent piece of a step: for the gate, one model x one task x settings
(cached); for quantize, one GGUF type or the AWQ scheme. The step decides what the units are,
looks each one up in its own cache where it has one, and hands the missing ones to an
executor; the executor runs them and yields each result as it arrives, so the step can cache
it at once (a re-run after a crash evaluates only what is missing). The step assembles its
outputs in its own order, so the executor never changes a report.

This module imports nothing heavy: the local executor must not import ray (start-up stays fast);
`medrelease.executors.raycluster` is imported only when `ray` is asked for.
"""

from __future__ import annotations

import os

from medrelease.core.errors import UsageError
from medrelease.executors.units import Executor, Resources, Unit, UnitFn

__all__ = [
    "EXECUTOR_NAMES",
    "Executor",
    "Resources",
    "Unit",
    "UnitFn",
    "make_executor",
    "resolve_executor_name",
]

EXECUTOR_NAMES = ("local", "ray")


def resolve_executor_name(flag: str | None, recipe_value: str | None) -> str:
    """The command-line flag wins over the recipe's `executor`; `local` by default."""
    name = flag or recipe_value or "local"
    if name not in EXECUTOR_NAMES:
        raise UsageError(
            f"unknown executor {name!r}",
            hint=f"use one of: {', '.join(EXECUTOR_NAMES)}",
        )
    return name


def make_executor(name: str, *, address: str | None = None) -> Executor:
    """`local`, or `ray` connected to `address` / $RAY_ADDRESS / a local Ray instance."""
    if name == "local":
        from medrelease.executors.local import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        from medrelease.executors.raycluster import RayExecutor

        return RayExecutor(address or os.environ.get("RAY_ADDRESS") or None)
    raise UsageError(f"unknown executor {name!r}", hint=f"use one of: {', '.join(EXECUTOR_NAMES)}")
