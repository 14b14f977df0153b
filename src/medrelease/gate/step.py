"""`medrelease gate`: evaluate the merged model and its baselines, apply the rules.

Library entry point: `gate_release(loaded_recipe, workdir=..., reporter=...)`. Writes
`gates/report.json` (also when a rule fails), records `steps.gate` in the manifest, and
raises `GateFailed` (exit 4) when any rule does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, cast

from medrelease.core.atomic import atomic_write_json
from medrelease.core.console import Reporter
from medrelease.core.errors import EnvironmentProblem, GateFailed, RecipeError, UsageError
from medrelease.core.hashing import file_record
from medrelease.core.paths import DEFAULT_WORKDIR
from medrelease.core.runner import StepRun, step_run
from medrelease.core.step import StepResult
from medrelease.executors import Executor, Resources, Unit, make_executor, resolve_executor_name
from medrelease.gate.cache import EvalCache, cache_key
from medrelease.gate.config import GatesConfig
from medrelease.gate.documents import apply_holdouts, holdouts_of
from medrelease.gate.inputs import INPUTS
from medrelease.gate.models import CANDIDATE, GateModel, baseline_models, candidate_model
from medrelease.gate.rules import evaluate_rule
from medrelease.gate.runner import (
    eval_dtype,
    extract_outcome,
    make_lm,
    model_args_with_dtype,
    run_lm_eval,
    silence_progress_bars,
)
from medrelease.gate.tasks import ResolvedTask, resolve_all
from medrelease.gate.units import EvalUnit, unit_resources
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.gate_report import (
    REPORT_SCHEMA_VERSION,
    GateReport,
    MetricEntry,
    RuleEntry,
    TaskInfo,
)
from medrelease.records.lm_eval_command import lm_eval_command
from medrelease.records.manifest import Files, GateRecord


@dataclass
class GateResult(StepResult[GateRecord]):
    report: GateReport = field(default_factory=lambda: cast(GateReport, {}))


def gates_of(loaded: LoadedRecipe, limit: int | float | None = None) -> GatesConfig:
    gates = loaded.recipe.gates
    if gates is None or not gates.tasks:
        raise RecipeError(
            "the recipe has no gates (no `gates.tasks`)",
            where=str(loaded.path),
            hint="add a gates: section with tasks and rules (see docs/CONTRACTS.md)",
        )
    if limit is not None:  # --limit: quick runs on every task
        if limit <= 0:  # the recipe's `limit` is checked by its schema (gt=0), this one here
            raise UsageError(
                f"--limit {limit:g}: the number of documents per task must be above 0",
                hint="give a count (e.g. --limit 8) or a fraction below 1 (e.g. --limit 0.1)",
            )
        tasks = [t.model_copy(update={"limit": limit}) for t in gates.tasks]
        gates = gates.model_copy(update={"tasks": tasks})
    return gates


def gate_release(
    loaded: LoadedRecipe,
    *,
    workdir: Path = DEFAULT_WORKDIR,
    reporter: Reporter | None = None,
    use_cache: bool = True,
    limit: int | float | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
) -> GateResult:
    """`executor`: `local` | `ray` (default: the recipe's `gates.executor`, else local);
    `ray_address`: the Ray cluster (default: $RAY_ADDRESS, else a local Ray instance)."""
    silence_progress_bars()
    gates = gates_of(loaded, limit)
    from medrelease.gate.metric_names import rule_metric_problems

    problems = rule_metric_problems(loaded)  # a rule no task can satisfy: before evaluating
    if problems:
        raise RecipeError.several(
            problems, what="gate rules name metrics no task computes", hint=problems[0].hint or ""
        )
    executor = resolve_executor_name(executor, gates.executor)  # a typo fails first
    with step_run(INPUTS, loaded, workdir, reporter, sweep=[lambda p: p.gates]) as run:
        return _gate_locked(run, gates, use_cache, executor, ray_address)


def evaluate_unit(unit: EvalUnit, state: dict[str, Any]) -> dict[str, Any]:
    """One unit, where the executor runs it (this process or a Ray worker): build the lm-eval
    model (once per process and run: `state` keeps it for the local executor) and evaluate."""
    if not unit.model_path.is_dir():  # only on a cluster: the driver found it
        import socket

        raise EnvironmentProblem(
            f"{socket.gethostname()} cannot see the model folder {unit.model_path}",
            hint="every Ray node must see the workdir and the stage folders at the driver's "
            "paths (a shared filesystem), or run with --executor local",
        )
    lms: dict[tuple[str, str], Any] = state.setdefault("lms", {})
    lm_key = (unit.model_name, str(unit.batch_size))
    if lm_key not in lms:
        lms[lm_key] = make_lm(
            unit.backend,
            unit.model_path,
            unit.model_args,
            unit.batch_size,
            unit.device,
            dtype=unit.dtype,
        )
    from medrelease.gate.progress import lm_eval_progress

    # the local executor hands over the unit's row (state["progress"]); a Ray worker has none
    with lm_eval_progress(state.get("progress")):
        raw = run_lm_eval(lms[lm_key], unit.task)
    return extract_outcome(raw, unit.task)


class _Evaluator:
    """Splits the gate into units (one model x one task x settings): cached ones are served
    from the cache, the rest go to the executor, and each result is cached as it arrives, so
    an interrupted run resumes with only what is missing. Outcomes are assembled in task,
    then model order whatever order the units finish in: the report does not depend on the
    executor."""

    def __init__(
        self,
        gates: GatesConfig,
        cache: EvalCache,
        use_cache: bool,
        reporter: Reporter,
        executor: Executor,
    ):
        self.gates = gates
        self.cache = cache
        self.use_cache = use_cache
        self.reporter = reporter
        self.executor = executor
        self.device = executor.resolve_device(gates.device)
        self.dtype: dict[str, Any] | None = None  # chosen in evaluate_all, for every model
        self.evaluated = 0
        self.cached = 0

    def settings(self, task: ResolvedTask) -> dict[str, Any]:
        return {
            **task.settings,
            "backend": self.gates.backend,
            "model_args": self.gates.model_args,
            "device": self.device,
            # float32 vs the checkpoint's dtype changes the numbers: part of the cache key
            "dtype": (self.dtype or {}).get("dtype"),
        }

    def _unit(
        self, model: GateModel, task: ResolvedTask, key: str, settings: dict[str, Any]
    ) -> Unit:
        payload = EvalUnit(
            model_name=model.name,
            model_path=model.path,
            task=task,
            backend=self.gates.backend,
            model_args=self.gates.model_args,
            batch_size=settings["batch_size"],
            device=self.device,
            dtype=self.dtype,
        )
        resources = (
            unit_resources(self.gates.backend, self.device, self.gates.model_args, model.path)
            if self.executor.name != "local"
            else Resources()
        )
        label = f"{model.name} / {task.label}: lm-eval"
        return Unit(key=key, label=label, fn=evaluate_unit, payload=payload, resources=resources)

    def evaluate_all(
        self, models: list[GateModel], tasks: list[ResolvedTask], fingerprints: dict[str, str]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """task label -> model name -> outcome, for every task and model."""
        # one dtype for the candidate and every baseline: their differences are not dtype noise
        self.dtype = eval_dtype(
            self.gates.backend, self.device, self.gates.model_args, [m.path for m in models]
        )
        found: dict[tuple[str, str], dict[str, Any]] = {}
        todo: list[Unit] = []
        todo_meta: list[tuple[str, str, dict[str, Any]]] = []
        for task in tasks:
            settings = self.settings(task)
            fp = fingerprints[task.label]
            for model in models:
                key = cache_key(model.content_hash, fp, settings)
                if self.use_cache and (hit := self.cache.get(key)) is not None:
                    self.cached += 1
                    self.reporter.info(f"{model.name} / {task.label}: cached")
                    found[(task.label, model.name)] = hit
                    continue
                material = {"model": model.content_hash, "task": fp, "settings": settings}
                todo.append(self._unit(model, task, key, settings))
                todo_meta.append((task.label, model.name, material))
        for i, out in self.executor.run(todo, self.reporter):
            label, name, material = todo_meta[i]
            self.cache.put(todo[i].key, out, material)  # at once: a crash later keeps it
            self.evaluated += 1
            found[(label, name)] = out
        return {t.label: {m.name: found[(t.label, m.name)] for m in models} for t in tasks}

    def close(self) -> None:
        self.executor.close()


def _reproduce(
    task: ResolvedTask,
    model: GateModel,
    gates: GatesConfig,
    device: str,
    dtype: dict[str, Any] | None,
) -> str:
    """The command that reruns one unit here (this machine's paths; the card writes the one
    a reader can run)."""
    args = model_args_with_dtype(gates.model_args, dtype)
    return lm_eval_command(
        backend=gates.backend,
        model_args=[("pretrained", model.path), *args.items()],
        task=task.lm_task,
        settings=task.settings,
        include_paths=[str(p) for p in task.include_paths],
        batch_size=task.settings["batch_size"],
        device=device,
        log_samples=True,
    )


def _task_info(task: ResolvedTask, first: dict[str, Any]) -> TaskInfo:
    """`tasks.<label>`: the task's settings and what lm-eval said of it (candidate's run)."""
    return {
        "preset": task.preset.name if task.preset else None,
        "task_yaml": task.spec.task_yaml,
        "lm_eval_task": task.lm_task,
        "version": first.get("version"),
        "num_fewshot": task.settings["num_fewshot"],
        "limit": task.settings["limit"],
        "samples": task.settings.get("samples"),
        "apply_chat_template": task.settings["apply_chat_template"],
        "gen_kwargs": task.settings["gen_kwargs"],
        "batch_size": task.settings["batch_size"],
        "n_samples": first.get("n_samples"),
        "subtasks": first.get("subtasks") or [],
    }


def build_report(
    gates: GatesConfig,
    models: list[GateModel],
    tasks: list[ResolvedTask],
    outcomes: dict[str, dict[str, dict[str, Any]]],  # task label -> model name -> outcome
    device: str,
    dtype: dict[str, Any] | None = None,
) -> GateReport:
    names = [m.name for m in models]
    metrics: list[MetricEntry] = []
    by_name: dict[str, MetricEntry] = {}
    samples: dict[str, dict[str, dict[str, list[float]]]] = {}
    task_info: dict[str, TaskInfo] = {}
    for task in tasks:
        per_model = outcomes[task.label]
        first = per_model[CANDIDATE]
        task_info[task.label] = _task_info(task, first)
        for mname, m in first["metrics"].items():
            entry: MetricEntry = {
                "metric": mname,
                "task": m["task"],
                "subtask": m["subtask"],
                "name": m["name"],
                "higher_is_better": m["higher_is_better"],
                "values": {n: per_model[n]["metrics"].get(mname, {}).get("value") for n in names},
                "stderr": {n: per_model[n]["metrics"].get(mname, {}).get("stderr") for n in names},
            }
            metrics.append(entry)
            by_name[mname] = entry
            samples[mname] = {n: per_model[n]["samples"].get(mname, {}) for n in names}
    rules: list[RuleEntry] = []
    for rule in gates.rules:
        found = by_name.get(rule.metric)
        rules.append(
            evaluate_rule(
                rule,
                found,
                found["values"] if found else {},
                samples.get(rule.metric, {}),
                candidate=CANDIDATE,
                iters=gates.bootstrap_iters,
                seed=gates.seed,
            )
        )
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "passed": all(r["passed"] for r in rules),
        "candidate": CANDIDATE,
        "models": {m.name: m.record for m in models},
        "harness": {
            "lm_eval": metadata.version("lm_eval"),
            "backend": gates.backend,
            "model_args": gates.model_args,
            "batch_size": gates.batch_size,
            "device": device,
            "dtype": (dtype or {}).get("dtype"),
            "dtype_reason": (dtype or {}).get("reason"),
            "bootstrap_iters": gates.bootstrap_iters,
        },
        "tasks": task_info,
        "metrics": metrics,
        "rules": rules,
        "reproduce": [_reproduce(t, m, gates, device, dtype) for t in tasks for m in models],
    }


def _check_rule_metrics(
    loaded: LoadedRecipe, gates: GatesConfig, outcomes: dict[str, dict[str, dict[str, Any]]]
) -> None:
    """A rule on a metric no task produced is a typo in the recipe (exit 2), not a failed gate."""
    from medrelease.core.suggest import did_you_mean

    produced = {name for per in outcomes.values() for name in per[CANDIDATE]["metrics"]}
    for i, rule in enumerate(gates.rules):
        if rule.metric not in produced:
            task = sorted(n for n in produced if n.startswith(rule.task + "/"))
            raise RecipeError(
                f"rule on {rule.metric!r}: task {rule.task!r} produced no such metric"
                f"{did_you_mean(rule.metric, produced)}",
                where=loaded.where(("gates", "rules", i, "metric")),
                hint=f"metrics of {rule.task}: {', '.join(task) or 'none'}",
            )


def _gate_locked(
    run: StepRun,
    gates: GatesConfig,
    use_cache: bool,
    executor_name: str | None = None,
    ray_address: str | None = None,
) -> GateResult:
    cand = candidate_model(run.paths, run.hashes)
    models = [cand, *baseline_models(run.loaded, run.paths, run.hashes, run.reporter)]
    run.hashes.save()
    run.timer.lap("models")

    cache_dir = run.paths.cache / "gates"
    tasks = resolve_all(gates, run.loaded.base_dir, cache_dir / "tasks", where=run.loaded.where)
    # a sweep's seeded hold-out: the gate evaluates the documents the search did not get
    tasks = apply_holdouts(tasks, holdouts_of(run.loaded.recipe), gates, run.loaded.base_dir)
    fingerprints = {t.label: t.fingerprint() for t in tasks}
    run.timer.lap("tasks")

    executor = make_executor(executor_name or "local", address=ray_address)
    ev = _Evaluator(gates, EvalCache(cache_dir), use_cache, run.reporter, executor)
    try:
        outcomes = ev.evaluate_all(models, tasks, fingerprints)
        executor_record = executor.describe()
    finally:
        ev.close()
    run.timer.lap("evaluate")

    _check_rule_metrics(run.loaded, gates, outcomes)
    report = build_report(gates, models, tasks, outcomes, ev.device, ev.dtype)
    atomic_write_json(run.paths.gate_report, report)
    run.timer.lap("rules_report")

    report_rec: Files = {run.paths.rel(run.paths.gate_report): file_record(run.paths.gate_report)}
    record: GateRecord = {
        "status": "done" if report["passed"] else "failed",
        "passed": report["passed"],
        "report": report_rec,
        "models": {m.name: m.content_hash for m in models},
        "rules": {
            "total": len(report["rules"]),
            "failed": sum(not r["passed"] for r in report["rules"]),
        },
        "evaluations": {"run": ev.evaluated, "cached": ev.cached},
        "executor": executor_record,
        "outputs": dict(report_rec),
    }
    run.record(record)
    result = GateResult("gate", record, run.paths.manifest, report=report)
    if not report["passed"]:
        from medrelease.gate.table import failed_rule_text

        failed = [failed_rule_text(r) for r in report["rules"] if not r["passed"]]
        err = GateFailed(
            f"{len(failed)} gate rule(s) failed: " + "; ".join(failed),
            hint=f"see {run.paths.gate_report}; the candidate must not be released as is",
        )
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result
