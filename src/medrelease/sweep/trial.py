"""One trial, where the executor runs it: merge the trial's point with the merge step (into the
trial's scratch workdir), evaluate it on the search split (one lm-eval run per task; the
objective's task first, watched item by item and stopped when the study's WilcoxonPruner
prunes it: medrelease.sweep.prune), judge the constraints with the gate's own rules.

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
from medrelease.core.heap import keep_freed_memory
from medrelease.gate.config import GatesConfig
from medrelease.gate.live_items import StopEvaluation
from medrelease.gate.models import CANDIDATE, GateModel
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.sweep.evaluate import EvalSettings, ModelEvaluator, SearchTask, restrict
from medrelease.sweep.prune import LivePruner, PruneWith, optuna_trial
from medrelease.sweep.space import apply_params


@dataclass
class TrialJob:
    loaded: LoadedRecipe
    scratch: Path  # this trial's scratch folder (the merge writes <scratch>/merged)
    folders: dict[str, Path]  # stage name -> folder, checked once for the study
    number: int
    trial_id: int
    params: dict[str, Any]
    stasks: list[SearchTask]
    ev: EvalSettings
    baselines: list[GateModel]
    # task label -> baseline name -> outcome on the search items (evaluated once per study)
    baseline_outcomes: dict[str, dict[str, dict[str, Any]]]
    objectives: list[tuple[str, str]]  # (metric, maximize|minimize)
    constraints: GatesConfig  # the gate's harness settings with the constraint rules
    prune: PruneWith | None = None


def run_trial(job: TrialJob, state: dict[str, Any]) -> dict[str, Any]:
    """The executor's unit function (`state` unused: what a process keeps between its trials,
    the network and the tokenizer, is kept by the gate's code: medrelease.gate.kept_network)."""
    started = time.monotonic()
    # every trial allocates the same tensors as the last: reuse the memory (core/heap.py)
    keep_freed_memory()
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
    metric = job.objectives[0][0]
    first = metric.split("/", 1)[0]  # the objective's task runs first: it is the one pruned
    order = sorted(job.stasks, key=lambda s: s.task.label != first)
    pruner = None
    if job.prune is not None:
        stask = next(s for s in job.stasks if s.task.label == first)
        trial = optuna_trial(job.prune, job.trial_id)
        pruner = LivePruner(trial, stask, metric, job.prune.increment)
    mine: dict[str, dict[str, Any]] = {}  # task label -> the trial's outcome
    try:
        for stask in order:
            watch = pruner if pruner is not None and stask is pruner.stask else None
            try:
                mine[stask.task.label] = ev.outcome(stask, stask.leaves, on_item=watch)
            except StopEvaluation:
                assert pruner is not None and pruner.partial is not None
                mine[stask.task.label] = pruner.partial
                break
            if watch is not None:  # complete: every item, for the trials that follow
                watch.report(mine[stask.task.label])
    finally:
        ev.close()
    pruned = pruner is not None and pruner.partial is not None
    outcomes = {}
    for label, out in mine.items():
        items = {i for per in out["samples"].values() for i in per}
        per_model = {CANDIDATE: out}
        for b in job.baselines:
            whole = job.baseline_outcomes[label][b.name]
            per_model[b.name] = restrict(whole, items) if pruned else whole
        outcomes[label] = per_model
    done = [s for s in job.stasks if s.task.label in mine]
    constraints = job.constraints
    if pruned:  # only the rules on what was evaluated
        produced = {n for o in mine.values() for n in o["metrics"]}
        rules = [r for r in constraints.rules if r.metric in produced]
        constraints = constraints.model_copy(update={"rules": rules})
    models = [merged, *job.baselines]
    report = build_report(
        constraints, models, [s.task for s in done], outcomes, job.ev.device, job.ev.dtype
    )
    metrics = {
        m["metric"]: {"value": m["values"][CANDIDATE], "stderr": m["stderr"][CANDIDATE]}
        for m in report["metrics"]
    }
    total = sum(s.total for s in job.stasks)
    used = sum(int(o.get("n_samples") or 0) for o in mine.values())
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
