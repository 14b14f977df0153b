"""What every executor takes and gives: a unit of work, the resources it asks for, and the
executor protocol. The executors (`local.py`, `raycluster.py`) import these from here, so that
the package's `make_executor`, which imports them when asked, is not imported back by them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from medrelease.core.manifest import ExecutorRecord

if TYPE_CHECKING:
    from medrelease.core.console import Reporter

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
