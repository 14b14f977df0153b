"""What must hold before anything is published: gates passed, files are what was recorded.

A release is published only as the manifest describes it: the gate verdict comes from
`steps.gate` and `gates/report.json` (both must agree), and every file's sha256 must equal
the one its step recorded. Gates can be overridden explicitly (the override is recorded);
changed files cannot: publishing them would make the published manifest lie.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.core.errors import GateFailed, VerificationError
from medrelease.core.hashing import HashCache, file_record
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.records.gate_report import read_gate_report
from medrelease.records.manifest import STEP_RECORDS, GateRecord, StepRecord, read_step


@dataclass
class GateVerdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    failed_rules: list[str] = field(default_factory=list)


def gate_verdict(manifest: Manifest, paths: ReleasePaths, hashes: HashCache) -> GateVerdict:
    """Read the gate result from the manifest and the report, and check they agree."""
    step = read_step(manifest, "gate", GateRecord)
    report_path = paths.gate_report
    if step is None:
        return GateVerdict(False, ["the gates were never run (no steps.gate in manifest.json)"])
    if step.get("status") not in ("done", "failed"):  # the gate step records "failed" on a fail
        return GateVerdict(False, [f"the gate step did not complete ({step.get('status')})"])
    if not report_path.is_file():
        return GateVerdict(False, [f"{paths.rel(report_path)} is missing"])
    recorded = (step.get("report") or {}).get("gates/report.json")
    if recorded and file_record(report_path, hashes)["sha256"] != recorded.get("sha256"):
        raise VerificationError(
            "gates/report.json changed after the gate step recorded it",
            hint="re-run `medrelease gate` so the report and manifest agree",
        )
    report = read_gate_report(report_path)
    failed = [str(r.get("text") or r.get("metric")) for r in report["rules"] if not r["passed"]]
    reasons: list[str] = []
    if step.get("passed") is not True:
        reasons.append("steps.gate.passed is not true in manifest.json")
    if report.get("passed") is not True:
        reasons.append("gates/report.json says passed: false")
    if failed:
        reasons.append("failed rules: " + "; ".join(failed))
    return GateVerdict(not reasons, reasons, failed)


def require_gates(verdict: GateVerdict, *, allow_failed_gates: bool) -> None:
    if verdict.passed or allow_failed_gates:
        return
    raise GateFailed(
        "refusing to publish: the release did not pass its gates ("
        + "; ".join(verdict.reasons)
        + ")",
        hint="fix the model or the rules and re-run `medrelease gate`; to publish anyway, pass "
        "--allow-failed-gates (recorded in the manifest and shown on the model card)",
    )


def recorded_outputs(manifest: Manifest) -> dict[str, dict[str, Any]]:
    """Every file any step recorded: release-relative path -> {sha256, size}."""
    out: dict[str, dict[str, Any]] = {}
    for name in manifest.data["steps"]:
        if name == "publish":
            continue
        step: Mapping[str, Any] | None = read_step(
            manifest, name, STEP_RECORDS.get(name, StepRecord)
        )
        if step is None:
            continue
        for rel, rec in (step.get("outputs") or {}).items():
            out[rel] = rec
        for rel, rec in (step.get("report") or {}).items():
            out[rel] = rec
        for quant in step.get("quants") or []:
            for rel, rec in (quant.get("files") or {}).items():
                out[rel] = rec
    return out


def verify_files(
    rels: list[str], paths: ReleasePaths, recorded: dict[str, dict[str, Any]], hashes: HashCache
) -> None:
    """Every file to publish exists and has the sha256 its step recorded."""
    problems: list[str] = []
    for rel in rels:
        path: Path = paths.root / rel
        rec = recorded.get(rel)
        if rec is None:
            problems.append(f"{rel}: not recorded by any step")
        elif not path.is_file():
            problems.append(f"{rel}: missing")
        elif file_record(path, hashes)["sha256"] != rec.get("sha256"):
            problems.append(f"{rel}: sha256 differs from the manifest")
    if problems:
        shown = "; ".join(problems[:5]) + (
            f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        )
        raise VerificationError(
            f"refusing to publish: files differ from what the manifest recorded: {shown}",
            where=str(paths.manifest),
            hint="the files changed after their step ran; re-run that step (merge, quantize or "
            "card) so the manifest describes what is published",
        )
