"""The card's "How the merge was chosen" section, from sweep/report.json (when the release's
merge was searched with `medrelease sweep`).

The chosen trial is the one whose merged weights are the released ones (same weights digest),
so the section never credits a search the release did not come from. Its search-split numbers
sit next to the gate's held-out numbers: over-fitting to the search items shows as a gap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medrelease.core.hashing import weights_digest
from medrelease.records.gate_report import GateReport
from medrelease.records.manifest import MergeRecord


def read_sweep_report(path: Path) -> dict[str, Any] | None:
    """The sweep's report, or None when there is none (or it cannot be read: no section)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("trials"), list) else None


def sweep_section(
    sweep: dict[str, Any] | None, merge: MergeRecord, report: GateReport
) -> dict[str, Any] | None:
    if not sweep:
        return None
    released = weights_digest(dict(merge.get("outputs") or {}))
    trials = sweep["trials"]
    chosen = next(
        (t for t in trials if t.get("weights_hash") == released and "duplicate_of" not in t), None
    )
    held_out = {
        m["metric"]: m["values"].get(report["candidate"]) for m in report.get("metrics") or []
    }
    objectives = [o["metric"] for o in sweep["objectives"]]
    rows = [
        {
            "metric": name,
            "search": ((chosen or {}).get("metrics") or {}).get(name, {}).get("value"),
            "held_out": held_out.get(name),
        }
        for name in objectives
    ]
    by_number = {t["number"]: t for t in trials}
    states: dict[str, int] = {}
    for t in trials:
        states[t["state"]] = states.get(t["state"], 0) + 1
    return {
        "sampler": sweep["sampler"],
        "seed": sweep["seed"],
        "trials": len(trials),
        "states": states,
        "search": sweep["search"],
        "objectives": sweep["objectives"],
        "constraints": sweep.get("constraints") or [],
        "front": [
            {"number": n, "params": by_number[n]["params"], "values": by_number[n]["values"]}
            for n in sweep["front"]
            if n in by_number
        ],
        "chosen": chosen,
        "rows": rows,
        "items_saved": (sweep.get("items") or {}).get("saved", 0),
    }
