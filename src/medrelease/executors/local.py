"""The default executor: every unit in this process, in order, exactly as a plain loop would."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.manifest import ExecutorRecord
from medrelease.executors.units import Unit


class LocalExecutor:
    name = "local"

    def __init__(self) -> None:
        self._state: dict[str, Any] = {}  # shared by the units: models are built once per run

    def resolve_device(self, device: str) -> str:
        if device != "auto":
            return device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def check_resources(self, units: Sequence[Unit]) -> None:
        return None  # this machine runs them one at a time, as it always has

    def run(self, units: Sequence[Unit], reporter: Reporter) -> Iterator[tuple[int, Any]]:
        for i, unit in enumerate(units):
            with reporter.phase(unit.label, total=None) as advance:
                # the unit may drive its own row: state["progress"] is the row's advance(n,
                # total=...) (the gate routes lm-eval's request counts there)
                self._state["progress"] = advance
                result = unit.fn(unit.payload, self._state)
            self._state.pop("progress", None)
            yield i, result

    def describe(self) -> ExecutorRecord:
        return {"name": self.name}

    def close(self) -> None:
        self._state.clear()
