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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from medrelease.core.errors import UsageError
from medrelease.core.manifest import ExecutorRecord

if TYPE_CHECKING:
    from medrelease.core.console import Reporter

EXECUTOR_NAMES = ("local", "ray")

# A unit's function runs as fn(payload, state). `state` is scratch the function may reuse between
# units of the same process (the local executor keeps it for the whole run, e.g. to build each
# lm-eval model once); a Ray task gets an empty one. fn must be a module-level function and the
# payload picklable: Ray ships both to the worker.
UnitFn = Callable[[Any, dict[str, Any]], Any]


@dataclass(frozen=True)
class Resources:
    """What one unit needs on one node; Ray schedules on these (reservations, not limits)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int = 0  # bytes of host memory, an estimate

    def describe(self) -> str:
        parts = [f"{self.num_cpus:g} CPU"]
        if self.num_gpus:
            parts.append(f"{self.num_gpus:g} GPU")
        if self.memory:
            parts.append(f"{self.memory / 2**30:.1f} GiB memory")
        return ", ".join(parts)


@dataclass
class Unit:
    key: str  # unique and stable (the cache key): names the unit in logs and hooks
    label: str  # what the user sees, e.g. "merged / demo_mcq"
    fn: UnitFn
    payload: Any
    resources: Resources = field(default_factory=Resources)


class Executor(Protocol):
    name: str

    def resolve_device(self, device: str) -> str:
        """`auto` -> `cuda` or `cpu`, judged where the units will run."""
        ...

    def check_resources(self, units: Sequence[Unit]) -> None:
        """Fail now (exit 7, with the fix) if some unit cannot run, e.g. no node can hold it:
        a step calls this before its expensive shared work. `run` checks again."""
        ...

    def run(self, units: Sequence[Unit], reporter: Reporter) -> Iterator[tuple[int, Any]]:
        """Run every unit; yield (index in `units`, result) as each finishes (any order)."""
        ...

    def describe(self) -> ExecutorRecord:
        """What ran the units, for the step's manifest record."""
        ...

    def close(self) -> None: ...


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
