"""`.eval_results/*.yaml`: the Hub's newer evaluation-results files, beside `model-index`.

A result in `.eval_results/` shows on a Hub benchmark's leaderboard, so it is written only
for a benchmark dataset registered on the Hub (a dataset with an `eval.yaml`; the task id is
the one that file defines) and only when the gate scored the whole split: a `limit` makes the
number a subset, which belongs in the card (and `model-index`, marked as such), not on a
leaderboard. Entries are built and serialised with huggingface_hub's own `EvalResultEntry`.

Registered benchmarks cannot be looked up offline: `HUB_BENCHMARKS` lists those medrelease's
presets read (used for preset tasks only), and `card.hub_benchmarks` adds others
(`{dataset id: task id}`, for any task on that dataset).
"""

from __future__ import annotations

import yaml

from medrelease.card.datasets import TaskData
from medrelease.records.gate_report import GateReport, MetricEntry, TaskInfo

# dataset id -> task id of its eval.yaml (https://huggingface.co/docs/hub/eval-results)
HUB_BENCHMARKS = {"TIGER-Lab/MMLU-Pro": "mmlu_pro"}
FOLDER = "eval_results"  # in card/; published as `.eval_results/`


def _headline_metric(report: GateReport, label: str) -> MetricEntry | None:
    """The task's first whole-task metric, the one its leaderboard ranks by."""
    return next(
        (m for m in report["metrics"] if m.get("task") == label and not m.get("subtask")), None
    )


def _notes(report: GateReport, settings: TaskInfo, metric: str) -> str:
    harness = report.get("harness") or {}
    parts = [f"lm-evaluation-harness {harness.get('lm_eval', '?')}", f"metric {metric}"]
    if settings.get("num_fewshot") is not None:
        parts.append(f"{settings['num_fewshot']}-shot")
    if settings.get("apply_chat_template"):
        parts.append("chat template")
    return ", ".join(parts)


def eval_result_files(
    report: GateReport,
    datasets: dict[str, TaskData],
    extra_benchmarks: dict[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """({file name: YAML text}, reasons a registered benchmark got no file)."""
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    extra = extra_benchmarks or {}
    cand = report["candidate"]
    files: dict[str, str] = {}
    skipped: list[str] = []
    for label, settings in report["tasks"].items():
        data = datasets.get(label)
        # the built-in list covers the presets (lm-eval's standard task); a custom task on the
        # same dataset scores something else, so it needs the recipe to name the benchmark
        registry = {**(HUB_BENCHMARKS if settings.get("preset") else {}), **extra}
        if data is None or data.hub_id not in registry:
            continue
        if settings.get("samples"):
            skipped.append(
                f"{label}: not written to .eval_results/ (the documents a sweep's hold-out "
                "left: a subset is no leaderboard score)"
            )
            continue
        if settings.get("limit") is not None:
            skipped.append(
                f"{label}: not written to .eval_results/ (limit {settings['limit']}: "
                "a subset is no leaderboard score)"
            )
            continue
        if data.local_copy:
            skipped.append(f"{label}: not written to .eval_results/ (scored on a local copy)")
            continue
        metric = _headline_metric(report, label)
        value = metric["values"].get(cand) if metric else None
        if metric is None or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        assert data.hub_id is not None
        entry = EvalResultEntry(
            dataset_id=data.hub_id,
            task_id=registry[data.hub_id],
            value=value,
            notes=_notes(report, settings, str(metric.get("name") or metric["metric"])),
        )
        text = yaml.safe_dump(eval_result_entries_to_yaml([entry]), sort_keys=False)
        files[f"{label}.yaml"] = text
    return files, skipped


def check_eval_result_files(files: dict[str, str]) -> None:
    """Parse each file back with huggingface_hub, as the Hub reads it; raise on any mismatch."""
    from huggingface_hub import parse_eval_result_entries

    for name, text in files.items():
        data = yaml.safe_load(text)
        if not isinstance(data, list) or not data:
            raise ValueError(f"{name}: not a list of results")
        for entry in parse_eval_result_entries(data):
            if not entry.dataset_id or not entry.task_id or entry.value is None:
                raise ValueError(f"{name}: a result without dataset id, task id or value")
