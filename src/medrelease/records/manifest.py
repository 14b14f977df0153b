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

from medrelease.core.manifest import (
    ExecutorRecord,
    FileRecord,
    Files,
    Json,
    StepId,
    StepRecord,
    Timings,
    read_step,
)
from medrelease.records.quantize import QuantizeRecord

__all__ = [
    "CARD",
    "GATE",
    "MERGE",
    "PUBLISH",
    "QUANTIZE",
    "STEP_IDS",
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


class VerificationCheck(TypedDict, total=False):
    """`steps.merge.verification.<check>` (merge/verify.py)."""

    ok: Required[bool]
    detail: Required[str]
    hint: str  # a failed check's fix


class MergeRecord(StepRecord, total=False):
    """`steps.merge` (merge/step.py): also sets the manifest header (`release`, `recipe`)."""

    method: str | None  # mergekit's merge_method
    seed: int | None
    mergekit_config: dict[str, Json]  # the recipe's merge block as run
    # stage name -> source, revision, files read (stages/sources.py, merge/step.py)
    stages: dict[str, dict[str, Any]]
    output_settings: dict[str, Any]  # chat template, generation_config applied
    verification: dict[str, VerificationCheck]  # the merged folder's checks


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
    executor: ExecutorRecord


class CardRecord(StepRecord, total=False):
    """`steps.card` (card/step.py)."""

    cards: dict[str, str]  # card name (model | gguf | awq) -> path
    chart: str | None
    metadata: dict[str, dict[str, Json]]  # card name -> its Hub front matter
    licenses: dict[str, Json]  # the license check's verdict (card/licenses.py)
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


# a file a dry run would publish (publish/plan.py `PlannedFile.summary`) and its status;
# "from" (where it comes from in the release folder) is a keyword, hence this spelling
PlanFile = TypedDict(
    "PlanFile",
    {"path": Required[str], "status": Required[str], "size": int, "sha256": str, "from": str},
    total=False,
)


class PlannedRepo(TypedDict, total=False):
    """One repo of a dry run's plan (publish/step.py `_dry_run`)."""

    repo: Required[str]
    role: Required[str]  # main | gguf | awq
    tag: Required[str | None]  # None: --review (a pull request, no tag)
    size: Required[int]
    files: Required[list[PlanFile]]  # status: planned | new | changed | unchanged | delete
    remote: str  # "new repo", "main at <commit>", a folder, or why it could not be read
    would_commit: bool
    card_diff: str  # unified diff of README.md against the remote's


class TargetRecord(TypedDict, total=False):
    """Where publish wrote: {kind: hub, endpoint} or {kind: dir, path}."""

    kind: Required[str]
    endpoint: str | None
    path: str | None


class PublishRecord(StepRecord, total=False):
    """`steps.publish` (publish/step.py); its outputs live on the Hub, not on disk."""

    target: TargetRecord
    review: bool
    gates_passed: bool
    overrides: dict[str, bool]  # {"allow_failed_gates": ...}
    overridden_stages: list[dict[str, str]]  # stages not the recipe's (stages/provenance.py)
    repos: list[RepoOutcome]
    changed_repos: int
    error: str  # why a failed run stopped
    # a dry run's result only (never written to the manifest): what it would publish
    plan: list[PlannedRepo]
    note: str | None  # why the remote was not compared


# Each step's name (spelled only here) and record type; the release's order is the pipeline's
# (pipeline/steps.py). A step whose record no other step reads may declare its StepId in its
# own package instead.
MERGE = StepId("merge", MergeRecord)
GATE = StepId("gate", GateRecord)
QUANTIZE = StepId("quantize", QuantizeRecord)
CARD = StepId("card", CardRecord)
PUBLISH = StepId("publish", PublishRecord)
STEP_IDS = (MERGE, GATE, QUANTIZE, CARD, PUBLISH)

STEP_RECORDS: dict[str, type[StepRecord]] = {s.name: s.record for s in STEP_IDS}
