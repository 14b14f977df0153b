"""Tables for `release` and `status`."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from medrelease.pipeline.run import ReleaseRun

STATE_STYLE = {
    "current": "green",
    "skipped": "green",
    "ran": "cyan",
    "stale": "yellow",
    "pending": "yellow",
    "not configured": "dim",
}


def release_table(run: ReleaseRun, *, title: str, artifacts: bool = False) -> RenderableType:
    table = Table(title=title, title_justify="left")
    table.add_column("step")
    table.add_column("state")
    table.add_column("why")
    if artifacts:
        table.add_column("artifacts (sha256)")
    for s in run.steps:
        style = STATE_STYLE.get(s.state, "")
        row = [s.name, f"[{style}]{s.state}[/{style}]" if style else s.state, ", ".join(s.why)]
        if artifacts:
            row.append(
                "\n".join(f"{k} {v['sha256'][:12]}" for k, v in list(s.outputs.items())[:8])
                + (f"\n… {len(s.outputs) - 8} more" if len(s.outputs) > 8 else "")
            )
        table.add_row(*row)
    return Group(table, Text(f"manifest: {run.manifest}"))


def status_json(run: ReleaseRun) -> dict[str, Any]:
    return {
        "manifest": str(run.manifest),
        "notes": run.notes,
        "steps": [
            {
                "step": s.name,
                "state": s.state,
                "why": s.why,
                "finished_at": s.finished_at,
                "outputs": s.outputs,
            }
            for s in run.steps
        ],
    }
