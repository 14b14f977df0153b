"""One trial, where the executor runs it: merge the trial's point with the merge step (into the
trial's scratch workdir), evaluate it on the search split increment by increment (pruned by
the study's WilcoxonPruner), judge the constraints with the gate's own rules.

Returns the trial's record (JSON); the driver tells Optuna. Everything here is picklable, so a
Ray worker runs the same function."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medrelease.core.errors import MedreleaseError
from medrelease.core.hashing import weights_digest
from medrelease.gate.config import GatesConfig
from medrelease.gate.models import CANDIDATE, GateModel
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.sweep.evaluate import (
    Chunk,
    EvalSettings,
    ModelEvaluator,
    SearchTask,
    combine,
    item_scores,
)
from medrelease.sweep.space import apply_params


@dataclass
class PruneWith:
    storage: str
    study_name: str
    p_threshold: float


@dataclass
class TrialJob:
    loaded: LoadedRecipe
    scratch: Path  # this trial's scratch folder (the merge writes <scratch>/merged)
    folders: dict[str, Path]  # stage name -> folder, checked once for the study
    number: int
    trial_id: int
    params: dict[str, Any]
    stasks: list[SearchTask]
    chunks: list[Chunk]
    ev: EvalSettings
    baselines: list[GateModel]
    # per increment: task label -> baseline name -> outcome (all served from the gate cache)
    baseline_outcomes: list[dict[str, dict[str, dict[str, Any]]]]
    objectives: list[tuple[str, str]]  # (metric, maximize|minimize)
    constraints: GatesConfig  # the gate's harness settings with the constraint rules
    prune: PruneWith | None = None


def run_trial(job: TrialJob, state: dict[str, Any]) -> dict[str, Any]:
    """The executor's unit function (`state` unused: every trial is a new model)."""
    started = time.monotonic()
    record: dict[str, Any] = {"number": job.number, "params": job.params}
    out = job.scratch / "merged"
    try:
        merged, whash = _merge(job, out)
        record["weights_hash"] = whash
        record["merge_s"] = round(time.monotonic() - started, 3)
        _evaluate(job, merged, record)
    except MedreleaseError as err:
        record.update(state="fail", reason=f"{type(err).__name__}: {err}")
    finally:
        shutil.rmtree(out, ignore_errors=True)  # the weights go; the record keeps their digest
    record["duration_s"] = round(time.monotonic() - started, 3)
    return record


def _merge(job: TrialJob, out: Path) -> tuple[GateModel, str]:
    """The trial's merge (medrelease.merge.trial: the release merge's mergekit run and output
    settings; the inputs were checked once for the study) and one hashing pass for both
    digests: the weights' (the adopted recipe's merge must reproduce it) and the folder's (the
    evaluation cache's key)."""
    from medrelease.core.hashing import HashCache, digest_of, folder_records
    from medrelease.merge.trial import merge_trial

    recipe = job.loaded.recipe
    merge = apply_params(recipe.merge, job.params)
    loaded = replace(job.loaded, recipe=recipe.model_copy(update={"merge": merge}))
    merge_trial(loaded, job.folders, out)
    records = folder_records(out, HashCache(None))
    h = "sha256:" + digest_of(records)  # = gate.models.model_content_hash(out)
    return GateModel(CANDIDATE, out, h, {"kind": "merged", "content_hash": h}), weights_digest(
        records
    )


def _evaluate(job: TrialJob, merged: GateModel, record: dict[str, Any]) -> None:
    from medrelease.gate.step import build_report

    started = time.monotonic()
    ev = ModelEvaluator(merged, job.ev)
    trial = _optuna_trial(job.prune, job.trial_id) if job.prune else None
    parts: dict[str, list[dict[str, Any]]] = {}
    done_chunks = 0
    pruned = False
    reported: set[int] = set()  # steps (items) already reported to Optuna
    try:
        for k, chunk in enumerate(job.chunks):
            for stask in job.stasks:
                if stask.task.label in chunk:
                    out = ev.outcome(stask, chunk[stask.task.label])
                    parts.setdefault(stask.task.label, []).append(out)
            done_chunks = k + 1
            if trial is not None and done_chunks < len(job.chunks):
                _report_items(trial, job, parts, reported)
                if trial.should_prune():
                    pruned = True
                    break
    finally:
        ev.close()
    outcomes = {}
    for stask in job.stasks:
        per_model = {CANDIDATE: combine(parts[stask.task.label])}
        for b in job.baselines:
            per_model[b.name] = combine(
                [c[stask.task.label][b.name] for c in job.baseline_outcomes[:done_chunks]]
            )
        outcomes[stask.task.label] = per_model
    models = [merged, *job.baselines]
    report = build_report(
        job.constraints, models, [s.task for s in job.stasks], outcomes, job.ev.device, job.ev.dtype
    )
    metrics = {
        m["metric"]: {"value": m["values"][CANDIDATE], "stderr": m["stderr"][CANDIDATE]}
        for m in report["metrics"]
    }
    total = sum(s.total for s in job.stasks)
    used = sum(len(ix) for c in job.chunks[:done_chunks] for part in c.values()
               for ix in part.values())  # fmt: skip
    failed = [r for r in report["rules"] if not r["passed"]]
    record.update(
        state="pruned" if pruned else "complete",
        values=[metrics.get(m, {}).get("value") for m, _ in job.objectives],
        metrics=metrics,
        rules=report["rules"],
        feasible=not failed,
        reason="; ".join(f"{r['text']}: {r.get('reason', '')}" for r in failed) or None,
        constraints=[0.0 if r["passed"] else 1.0 for r in report["rules"]],
        items={"evaluated": used, "total": total, "saved": total - used},
        evaluations={"run": ev.evaluated, "cached": ev.cached},
        lm_eval_s=round(ev.lm_eval_s, 3),
        **({} if ev.forward_s is None else {"forward_s": round(ev.forward_s, 3)}),
        eval_s=round(time.monotonic() - started, 3),
    )


def _optuna_trial(prune: PruneWith, trial_id: int) -> Any:
    import warnings

    import optuna

    with warnings.catch_warnings():  # "experimental": its interface, not its results
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pruner = optuna.pruners.WilcoxonPruner(p_threshold=prune.p_threshold)
    study = optuna.load_study(study_name=prune.study_name, storage=prune.storage, pruner=pruner)
    return optuna.trial.Trial(study, trial_id)


def _report_items(
    trial: Any, job: TrialJob, parts: dict[str, list[dict[str, Any]]], reported: set[int]
) -> None:
    """Each item's objective value as one step (WilcoxonPruner pairs trials item by item)."""
    metric = job.objectives[0][0]
    label = metric.split("/", 1)[0]
    stask = next(s for s in job.stasks if s.task.label == label)
    scores = item_scores(combine(parts[label]), metric, list(stask.leaves))
    for step, value in sorted(scores.items()):
        if step not in reported:
            trial.report(value, step)
            reported.add(step)
