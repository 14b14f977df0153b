"""`manifest.json`'s step records, typed, and the one way a reader loads one.

The fields every record carries (`status`, `outputs`, `tools`, `timings`, `components`,
`inputs_hash`) are `core.manifest.StepRecord`, written by the step and the runner
(core/runner.py). Each step's record extends it here (quantize's in `records.quantize`).
A reader gets a step's record with `read_step` (defined in core/manifest.py, so that the
runner's skip check uses it too), which checks it against its type first: a record edited by
hand, or truncated, is an InputError naming the key and the step to re-run.
"""

from __future__ import annotations

from typing import Any, Required

from typing_extensions import TypedDict  # pydantic reads only this one before Python 3.12

from medrelease.core.manifest import FileRecord, Files, StepRecord, Timings, read_step
from medrelease.records.quantize import QuantizeRecord

__all__ = [
    "STEP_RECORDS",
    "CardRecord",
    "FileRecord",
    "Files",
    "GateRecord",
    "MergeRecord",
    "PublishRecord",
    "QuantizeRecord",
    "RepoOutcome",
    "StepRecord",
    "Timings",
    "read_step",
]


class MergeRecord(StepRecord, total=False):
    """`steps.merge` (merge/step.py): also sets the manifest header (`release`, `recipe`)."""

    method: str | None  # mergekit's merge_method
    seed: int | None
    mergekit_config: dict[str, Any]  # the recipe's merge block as run
    stages: dict[str, dict[str, Any]]  # stage name -> source, revision, files read
    output_settings: dict[str, Any]  # chat template, generation_config applied
    verification: dict[str, Any]  # the merged folder's checks


class GateCounts(TypedDict):
    total: int
    failed: int


class EvalCounts(TypedDict):
    run: int
    cached: int


class GateRecord(StepRecord, total=False):
    """`steps.gate` (gate/step.py); the report itself is `records.gate_report.GateReport`."""

    passed: bool
    report: Files  # {"gates/report.json": {sha256, size}}
    models: dict[str, str]  # model name -> content hash evaluated
    rules: GateCounts
    evaluations: EvalCounts
    executor: dict[str, Any]  # {"name": "local"} or {"name": "ray", "nodes": N}


class CardRecord(StepRecord, total=False):
    """`steps.card` (card/step.py)."""

    cards: dict[str, str]  # card name (model | gguf | awq) -> path
    chart: str | None
    metadata: dict[str, dict[str, Any]]  # card name -> its Hub front matter
    licenses: dict[str, Any]
    report_sha256: str  # the gate report the cards were rendered from


class RepoOutcome(TypedDict, total=False):
    """`steps.publish.repos[]`: what happened to one repo."""

    repo: Required[str]
    role: Required[str]  # main | gguf | awq
    status: str  # committed | unchanged | pull-request | exported
    url: str
    tag: str | None
    files: int
    added: list[str]
    changed: list[str]
    deleted: list[str]
    unchanged: int
    commit: str
    pr_num: int | None
    pr_url: str | None
    docs_only: bool
    verified_files: int


class PublishRecord(StepRecord, total=False):
    """`steps.publish` (publish/step.py); its outputs live on the Hub, not on disk."""

    target: dict[str, Any]  # {kind: hub, endpoint} | {kind: dir, path}
    review: bool
    gates_passed: bool
    overrides: dict[str, bool]  # {"allow_failed_gates": ...}
    overridden_stages: list[dict[str, str]]  # stages not the recipe's (stages/provenance.py)
    repos: list[RepoOutcome]
    changed_repos: int
    error: str  # why a failed run stopped


STEP_RECORDS: dict[str, type[StepRecord]] = {
    "merge": MergeRecord,
    "gate": GateRecord,
    "quantize": QuantizeRecord,
    "card": CardRecord,
    "publish": PublishRecord,
}
