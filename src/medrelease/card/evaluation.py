"""The evaluation a card shows: the gate report's metrics, rules and how to rerun them.

Values stay raw (floats as in report.json); templates format them with the `num` and `delta`
filters, so the rounding rule lives in one place (`card.decimals`).
"""

from __future__ import annotations

import re
from typing import Any, TypedDict, TypeGuard

from medrelease.card.datasets import TaskData
from medrelease.card.eval_bundle import EvalBundle
from medrelease.card.metadata import subset_note
from medrelease.card.reproduce import Rerun, eval_dtype, reproduce
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.gate_report import GateReport, RuleEntry


class MetricRow(TypedDict):
    metric: str
    task: str
    subtask: str | None
    name: str
    higher_is_better: bool
    scores: dict[str, float]  # model -> value (a model the harness could not score is absent)
    stderr: dict[str, float]
    deltas: dict[str, float]  # baseline -> candidate minus baseline


class SubjectGroup(TypedDict):
    task: str
    name: str
    rows: list[MetricRow]


class TaskDataset(TypedDict):
    id: str | None
    split: str | None
    local_copy: bool
    in_eval_dir: bool
    subset: str | None


def evaluation(report: GateReport) -> dict[str, Any]:
    cand = report["candidate"]
    models = report["models"]
    baselines = [m for m in models if m != cand]
    rows: list[MetricRow] = []
    for m in report["metrics"]:
        # a model the harness could not score on a metric has null: shown as "–"
        values = {k: v for k, v in m["values"].items() if _is_number(v)}
        stderr = {k: v for k, v in (m.get("stderr") or {}).items() if _is_number(v)}
        deltas = {b: values[cand] - values[b] for b in baselines if b in values and cand in values}
        rows.append(
            MetricRow(
                metric=m["metric"],
                task=m.get("task") or m["metric"].split("/")[0],
                subtask=m.get("subtask"),
                name=m.get("name") or m["metric"].rsplit("/", 1)[-1],
                higher_is_better=m.get("higher_is_better", True),
                scores=values,
                stderr=stderr,
                deltas=deltas,
            )
        )
    summary = [r for r in rows if not r["subtask"]]
    subjects: list[SubjectGroup] = []
    for r in rows:
        if not r["subtask"]:
            continue
        key = (r["task"], r["name"])
        group = next((g for g in subjects if (g["task"], g["name"]) == key), None)
        if group is None:
            group = SubjectGroup(task=r["task"], name=r["name"], rows=[])
            subjects.append(group)
        group["rows"].append(r)
    tasks = [{"name": name, **settings} for name, settings in report["tasks"].items()]
    return {
        "passed": bool(report.get("passed")),
        "candidate": cand,
        "baselines": baselines,
        "models": models,
        "harness": report.get("harness") or {},
        "tasks": tasks,
        "summary": summary,
        "subjects": subjects,
        "rules": [_readable_rule(r) for r in report["rules"]],
        "by_metric": {r["metric"]: r for r in rows},
        "gated_metrics": list(dict.fromkeys(r["metric"] for r in report["rules"] if "metric" in r)),
    }


# `>= base + -1` (a negative min_gain) reads `>= base - 1`; `- -1` reads `+ 1`
_SIGNED = re.compile(r"([+-]) -(?=\d)")


def _readable_rule(rule: RuleEntry) -> RuleEntry:
    text = _SIGNED.sub(lambda m: "- " if m.group(1) == "+" else "+ ", rule["text"])
    return {**rule, "text": text}


def evaluation_provenance(
    loaded: LoadedRecipe,
    report: GateReport,
    datasets: dict[str, TaskData],
    bundle: EvalBundle,
) -> dict[str, Any]:
    """What a reader needs to rerun the gates: datasets, dtype, subset notes, commands."""
    cand = report["candidate"]
    rerun: Rerun = reproduce(loaded, report, bundle)
    dtypes = {m: d for m in report["models"] if (d := eval_dtype(report, m))}
    datasets_by_task: dict[str, TaskDataset] = {}
    for label, settings in report["tasks"].items():
        data = datasets.get(label)
        datasets_by_task[label] = TaskDataset(
            id=data.hub_id if data else None,
            split=data.split if data else None,
            local_copy=bool(data and data.local_copy),
            in_eval_dir=bundle.tasks[label].include if label in bundle.tasks else False,
            subset=subset_note(settings.get("limit"), settings.get("samples")),
        )
    return {
        "dtype": dtypes.get(cand) or eval_dtype(report),
        "dtype_reason": dtype_reason(report),
        "dtypes": dtypes,
        "datasets": datasets_by_task,
        "subset": any(d["subset"] for d in datasets_by_task.values()),
        "eval_files": sorted(bundle.files),
        "notes": list(dict.fromkeys(bundle.notes)),
        # command lines (what templates written for earlier versions show) and their details
        "reproduce": [c["command"] for c in rerun["commands"]],
        "rerun": rerun,
    }


def dtype_reason(report: GateReport) -> str | None:
    """Why the gate evaluated in its dtype, in words for a reader.

    The gate records its reason for its own log, where it may name internal keys
    (`dtype_reason ...`) or this machine's figures (free memory): a card states the
    reason's substance only, and leaves a machine figure out."""
    harness = report.get("harness") or {}
    value = harness.get("dtype")
    # `harness.dtype_reason`; reports of earlier versions: `harness.dtype: {dtype, reason}`
    reason = value.get("reason") if isinstance(value, dict) else harness.get("dtype_reason")
    if not reason:
        return None
    text = re.sub(r"\bdtype_reason\b:?\s*", "", str(reason)).strip()
    # core/compute_dtype.py states sizes against this machine's free memory: "(3.2 GiB) < 60%
    # of available memory (12.0 GiB)" keeps its substance without the figures
    text = re.sub(r"\s*\([\d.]+\s*[KMGT]i?B\)", "", text)
    text = re.sub(r"<\s*\d+%\s+of available memory", "fits in the memory available", text)
    return text or None


def _is_number(v: Any) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v  # not NaN
