"""What every step returns, so the CLI and the pipeline treat them alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic

from medrelease.core.manifest import Rec


@dataclass
class StepResult(Generic[Rec]):
    step: str  # the step's name (its StepId)
    # what was written to manifest.json under steps.<step>: the step's typed record
    # (medrelease.records), read-only here
    record: Rec
    manifest: Path
    skipped: bool = False  # nothing to do: inputs unchanged since the recorded run
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "manifest": str(self.manifest),
            "warnings": self.warnings,
            **{k: v for k, v in self.record.items() if k not in ("outputs",)},
            "status": "skipped" if self.skipped else self.record.get("status", "done"),
        }
