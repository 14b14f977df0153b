"""`gates/report.json`: what the gate evaluated, how, what it measured and what it decided.

Written by the gate (gate/step.py `build_report`), read by the card, publish and quantize's
eval checks. Keys are NotRequired where a report written by an earlier version (or a
minimal one made by hand) lacks them and the readers do without.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NotRequired, cast

from typing_extensions import TypedDict  # pydantic reads only this one before Python 3.12

from medrelease.core.errors import InputError
from medrelease.core.manifest import Json
from medrelease.core.validate import check_record

REPORT_SCHEMA_VERSION = 1
REPORT_HINT = "re-run `medrelease gate RECIPE` (its format: medrelease/records/gate_report.py)"


class ModelEntry(TypedDict):
    """`models.<name>`: the candidate (`kind: merged`), a stage, or a `reference: true` stage."""

    kind: str  # merged | stage | reference
    content_hash: str
    path: NotRequired[str]  # merged: relative to the release folder
    source: NotRequired[str]  # stages: a Hub id or a local folder
    revision: NotRequired[str | None]  # stages: the Hub commit evaluated


class Harness(TypedDict):
    """`harness`: lm-eval and the settings every task ran with."""

    lm_eval: NotRequired[str]  # lm-eval's version
    backend: NotRequired[str]  # lm-eval model type: hf, vllm, ...
    model_args: NotRequired[dict[str, Json]]
    batch_size: NotRequired[int | str]  # or "auto"
    device: NotRequired[str]
    # the dtype evaluated in (core/compute_dtype.py); reports of earlier versions: {dtype, reason}
    dtype: NotRequired[str | dict[str, Json] | None]
    dtype_reason: NotRequired[str | None]
    bootstrap_iters: NotRequired[int]


class TaskInfo(TypedDict):
    """`tasks.<label>`: one gate task and its settings (`lm_eval_command` turns them into flags)."""

    preset: NotRequired[str | None]
    task_yaml: NotRequired[str | None]  # a custom task, relative to the recipe
    lm_eval_task: NotRequired[str]
    version: NotRequired[int | float | str | None]
    num_fewshot: NotRequired[int | None]
    limit: NotRequired[int | float | None]  # documents, or a fraction below 1
    # lm-eval leaf task -> document indices: the documents a sweep's hold-out left the gate
    samples: NotRequired[dict[str, list[int]] | None]
    apply_chat_template: NotRequired[bool]
    gen_kwargs: NotRequired[dict[str, Json] | None]
    batch_size: NotRequired[int | str]
    n_samples: NotRequired[int | None]
    subtasks: NotRequired[list[str]]


class MetricEntry(TypedDict):
    """`metrics[]`: one metric (`<task>/<metric>` or `<task>/<subtask>/<metric>`) per model."""

    metric: str
    values: dict[str, float | None]  # model name -> value (null: the harness gave none)
    task: NotRequired[str]
    subtask: NotRequired[str | None]
    name: NotRequired[str]
    higher_is_better: NotRequired[bool]
    stderr: NotRequired[dict[str, float | None]]


class RuleEntry(TypedDict):
    """`rules[]`: one recipe rule as evaluated (gate/rules.py `evaluate_rule`)."""

    text: str  # e.g. "mmlu_medical/acc >= base - 0.01"
    passed: bool
    metric: NotRequired[str]
    kind: NotRequired[str]  # min | max | max_drop | min_gain
    vs: NotRequired[str | None]  # the baseline compared against
    threshold: NotRequired[float]
    higher_is_better: NotRequired[bool]
    candidate: NotRequired[float | None]
    baseline: NotRequired[float | None]
    delta: NotRequired[float | None]  # candidate - baseline
    ci: NotRequired[list[float] | None]  # paired-bootstrap interval of delta
    significant: NotRequired[bool | None]
    reason: NotRequired[str]


class GateReport(TypedDict):
    schema_version: int  # REPORT_SCHEMA_VERSION
    passed: bool  # every rule passed
    candidate: str  # the key of the merged model in `models`
    models: dict[str, ModelEntry]
    tasks: dict[str, TaskInfo]
    metrics: list[MetricEntry]
    rules: list[RuleEntry]
    harness: NotRequired[Harness]
    reproduce: NotRequired[list[str]]  # the gate's own lm_eval command lines (this machine)


# what a field must be, said in words where the type alone reads poorly
MESSAGES = {"metrics.*.values": "'values' must map model -> number or null"}


def check_gate_report(data: Any, where: Path) -> GateReport:
    """`data` (as loaded from `where`) as a GateReport, or one InputError saying what is wrong."""
    what = "gate report"
    hint = REPORT_HINT
    if isinstance(data, dict) and data.get("schema_version") != REPORT_SCHEMA_VERSION:
        raise InputError(
            f"{what} is malformed: schema_version {data.get('schema_version')!r}, "
            f"expected {REPORT_SCHEMA_VERSION}",
            where=str(where),
            hint=hint,
        )
    check_record(GateReport, data, what=what, where=str(where), hint=hint, messages=MESSAGES)
    report = cast(GateReport, data)
    problems = []
    if report["candidate"] not in report["models"]:
        problems.append(f"candidate {report['candidate']!r} is not one of the models")
    for i, m in enumerate(report["metrics"]):
        unknown = sorted(set(m["values"]) - set(report["models"]))
        if unknown:
            problems.append(f"metrics[{i}] ({m['metric']}): values for unknown models {unknown}")
    if problems:
        raise InputError(f"{what} is malformed: {'; '.join(problems)}", where=str(where), hint=hint)
    return report


def read_gate_report(path: Path) -> GateReport:
    """Load and check `gates/report.json` (the caller says what a missing one means)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})", hint=REPORT_HINT) from None
    return check_gate_report(data, path)
