"""The sweep's driver: one Optuna study per recipe (in a real database), trials asked, run by an
executor, told; resumable.

Resume rules (the study lives in SQLite in <build>/<release>/sweep/ unless --storage says
otherwise, and one sweep runs per release at a time: a lock on the sweep folder):
* a trial left RUNNING by a killed run is marked FAIL and its parameters are queued again, so it
  is re-run first (its record says `retry_of`);
* a parameter set the sampler proposes again is not evaluated twice: the trial copies the
  earlier trial's record and result (`duplicate_of`);
* the budget (`sweep.trials`, or --trials) counts the study's finished trials, so a re-run goes on
  where the last one stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.errors import RecipeError
from medrelease.core.hashing import HashCache, digest_of
from medrelease.core.heap import give_back_freed_memory
from medrelease.core.lock import release_lock
from medrelease.core.paths import DEFAULT_WORKDIR, ReleasePaths
from medrelease.executors import (
    Executor,
    Resources,
    Unit,
    make_executor,
    resolve_executor_name,
)
from medrelease.gate.models import GateModel
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.sweep.check import check_sweep
from medrelease.sweep.config import SweepConfig
from medrelease.sweep.evaluate import (
    EvalSettings,
    ModelEvaluator,
    SearchTask,
    require_metrics,
    search_tasks,
)
from medrelease.sweep.prune import PruneWith
from medrelease.sweep.report import RECORD, SweepReport
from medrelease.sweep.trial import TrialJob, run_trial


@dataclass
class SweepResult:
    report: SweepReport
    report_path: Path
    ran: int = 0
    warnings: list[str] = field(default_factory=list)


def sweep_dir(loaded: LoadedRecipe, workdir: Path) -> Path:
    return ReleasePaths(workdir, loaded.recipe.release.name).sweep


def default_storage(loaded: LoadedRecipe, workdir: Path) -> str:
    return f"sqlite:///{(sweep_dir(loaded, workdir) / 'study.db').resolve()}"


def study_name(loaded: LoadedRecipe) -> str:
    """Named by what defines the search (space, objectives, split, constraints, the merge block
    but for the searched values, the gates): a changed sweep starts a fresh study, an adopted
    recipe (only searched values changed) still names the same one."""
    from medrelease.sweep.space import apply_params

    recipe = loaded.recipe
    sweep = check_sweep(loaded)
    blank = apply_params(recipe.merge, {p.path: None for p in sweep.space})
    search = sweep.model_dump(mode="json", exclude={"trials", "timeout"})
    gates = recipe.gates.model_dump(mode="json") if recipe.gates else None
    name = f"{recipe.release.name}-sweep-"
    return (
        name
        + digest_of({"sweep": search, "merge": blank, "gates": gates, "seed": recipe.seed})[:12]
    )


def make_sampler(sweep: SweepConfig, existing: int = 0) -> Any:
    """The sampler; `existing`: trials already in the study. A resumed run's sampler is seeded
    with seed + existing, so it does not propose the first run's sequence again (a fresh
    study, and so an uninterrupted run, uses `seed` itself)."""
    import optuna

    from medrelease.sweep.space import grid

    name = sweep.sampler_name
    seed = sweep.seed + existing
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "grid":
        return _grid_sampler(grid(sweep), seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _grid_sampler_class() -> Any:
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler calls `study.stop()` when the grid is done, which only works
        inside `study.optimize`; the sweep asks and tells, and stops on `is_exhausted`."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridSampler


def _grid_sampler(search_space: dict[str, list[Any]], seed: int) -> Any:
    return _grid_sampler_class()(search_space, seed=seed)


def set_constraints(trial: Any, values: list[float]) -> None:
    """Optuna's constraint values (feasible when every one is <= 0), one per rule, on the
    trial itself (Optuna 5's `Trial.set_constraint`): TPE and NSGA-II read them from there."""
    for i, value in enumerate(values):
        trial.set_constraint(f"rule{i}", float(value))


def open_study(loaded: LoadedRecipe, storage_url: str) -> Any:
    import optuna

    sweep = check_sweep(loaded)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner: Any = optuna.pruners.NopPruner()
    if sweep.pruning is not None and sweep.pruning.enabled:
        import warnings

        with warnings.catch_warnings():  # "experimental": its interface, not its results
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            pruner = optuna.pruners.WilcoxonPruner(p_threshold=sweep.pruning.p_threshold)
    try:
        storage = optuna.storages.RDBStorage(storage_url)
    except Exception as exc:  # sqlalchemy: bad URL, unreachable server, missing driver
        raise RecipeError(
            f"cannot open the study storage {storage_url!r}: {exc}",
            hint="--storage takes a database URL Optuna accepts, e.g. sqlite:///study.db",
        ) from None
    study = optuna.create_study(
        storage=storage,
        study_name=study_name(loaded),
        sampler=make_sampler(sweep),
        pruner=pruner,
        directions=[o.direction for o in sweep.objectives],
        load_if_exists=True,
    )
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = make_sampler(sweep, existing)
    return study


def finished(study: Any) -> list[Any]:
    """Trials that count against the budget: complete, pruned, or failed with a record (an
    error in the trial itself); a failure without one was a killed run, re-run instead."""
    from optuna.trial import TrialState

    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and RECORD in t.user_attrs)
    ]


def recover(study: Any, reporter: Reporter) -> int:
    """Trials a killed run left RUNNING: FAIL, and their parameters queued to run again."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    waiting = [t.params for t in trials if t.state == TrialState.WAITING]
    n = 0
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        n += 1
        if t.params and t.params not in waiting:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            waiting.append(t.params)
    if n:
        reporter.warn(f"{n} trial(s) of an interrupted run marked failed; they run again first")
    return n


@dataclass
class _Context:
    loaded: LoadedRecipe
    sweep: SweepConfig
    stasks: list[SearchTask]
    ev: EvalSettings
    baselines: list[GateModel]
    baseline_outcomes: dict[str, dict[str, dict[str, Any]]]  # task label -> baseline -> outcome
    scratch: Path
    folders: dict[str, Path]  # the merge's stages, checked once
    storage: str
    study_name: str
    folder: Path | None = None  # where report.json is rewritten after every trial


def run_sweep(
    loaded: LoadedRecipe,
    *,
    workdir: Path = DEFAULT_WORKDIR,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    parallel: int | None = None,
    reporter: Reporter | None = None,
) -> SweepResult:
    """`parallel`: trials asked and run at once (default: 1 locally; with Ray, the rest of the
    budget, so a batch fills the cluster; fewer gives a model-based sampler more feedback)."""
    from medrelease.gate.kept_network import NETWORKS
    from medrelease.sweep.report import write_report

    reporter = reporter or Reporter()
    sweep = check_sweep(loaded)  # exit 2 before anything is merged or evaluated
    executor_name = resolve_executor_name(executor, None)
    folder = sweep_dir(loaded, workdir)
    storage_url = storage or default_storage(loaded, workdir)
    budget = trials if trials is not None else sweep.trials
    limit_s = timeout if timeout is not None else sweep.timeout
    runner = make_executor(executor_name, address=ray_address)
    try:
        with release_lock(folder):
            # `auto` is judged where the trials run (a GPU cluster driven from a laptop)
            gates = loaded.recipe.gates
            device = runner.resolve_device(gates.device if gates else "auto")
            ctx = _prepare(loaded, sweep, workdir, folder, storage_url, device, reporter)
            study = open_study(loaded, storage_url)
            recover(study, reporter)
            ctx.folder = folder
            ran = _loop(study, ctx, budget, limit_s, runner, parallel, reporter)
            report, path = write_report(study, loaded, ctx.stasks, ctx.baselines, ctx, folder)
    finally:
        runner.close()
        NETWORKS.clear()  # the last trial's network (medrelease.gate.kept_network)
        give_back_freed_memory()  # what the trials kept for reuse (core/heap.py)
    return SweepResult(report, path, ran)


def _prepare(
    loaded: LoadedRecipe,
    sweep: SweepConfig,
    workdir: Path,
    folder: Path,
    storage_url: str,
    device: str,
    reporter: Reporter,
) -> _Context:
    """Tasks, baselines and their search-split outcomes (gate cache), before any merge."""
    from medrelease.gate.models import baseline_models
    from medrelease.gate.runner import eval_dtype, silence_progress_bars
    from medrelease.gate.tasks import resolve_all
    from medrelease.merge.trial import check_trial_inputs
    from medrelease.sweep.split import plan_search

    silence_progress_bars()
    gates = loaded.recipe.gates
    assert gates is not None
    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    hashes = HashCache(paths.hash_cache)
    tasks = resolve_all(gates, loaded.base_dir, paths.cache / "gates" / "tasks", loaded.where)
    plans = plan_search(loaded, sweep, gates)
    stasks = search_tasks(tasks, plans, paths.cache / "gates" / "tasks", loaded.base_dir)
    if sweep.pruning is not None and sweep.pruning.enabled:
        _say_pruning(stasks, sweep, reporter)
    with reporter.phase("the merge's stages: preflight and NaN/Inf scan (once per study)"):
        folders = check_trial_inputs(loaded, workdir, reporter)
    baselines = baseline_models(loaded, paths, hashes, reporter)
    probe = baselines or [_probe_model(loaded, paths, hashes, reporter)]
    hashes.save()
    dtype = eval_dtype(gates.backend, device, gates.model_args, [m.path for m in probe])
    ev = EvalSettings(gates, device, dtype, paths.cache / "gates")
    outcomes: dict[str, dict[str, dict[str, Any]]] = {}
    for model in probe:
        evaluator = ModelEvaluator(model, ev)
        for stask in stasks:
            with reporter.phase(f"{model.name} / {stask.task.label}: search items"):
                out = evaluator.outcome(stask, stask.leaves)
            outcomes.setdefault(stask.task.label, {})[model.name] = out
        evaluator.close()
    wanted = [
        (o.metric, ("sweep", "objectives", i, "metric")) for i, o in enumerate(sweep.objectives)
    ]
    first = {label: next(iter(per.values())) for label, per in outcomes.items()}
    require_metrics(wanted, first, loaded.where)
    return _Context(
        loaded=loaded,
        sweep=sweep,
        stasks=stasks,
        ev=ev,
        baselines=baselines,
        baseline_outcomes=outcomes if baselines else {},
        scratch=folder / "scratch",
        folders=folders,
        storage=storage_url,
        study_name=study_name(loaded),
    )


def _say_pruning(stasks: list[SearchTask], sweep: SweepConfig, reporter: Reporter) -> None:
    assert sweep.pruning is not None
    label = sweep.objectives[0].metric.split("/", 1)[0]
    stask = next((s for s in stasks if s.task.label == label), None)
    if stask is not None:
        reporter.info(
            f"pruning: {label}'s run is checked every {sweep.pruning.increment} of its "
            f"{stask.total} search items (p < {sweep.pruning.p_threshold:g})"
        )


def _probe_model(
    loaded: LoadedRecipe, paths: ReleasePaths, hashes: HashCache, reporter: Reporter
) -> GateModel:
    """Without baselines, the merge's first stage is evaluated (once, cached) to check that
    the objectives exist before anything is merged."""
    from medrelease.gate.models import model_content_hash
    from medrelease.recipe.merge_refs import merge_stage_names
    from medrelease.stages.folders import stage_folder

    name = merge_stage_names(loaded.recipe.merge)[0]
    stage = stage_folder(loaded, name, paths, hashes=hashes, reporter=reporter)
    h = model_content_hash(stage.path, hashes)
    return GateModel(name, stage.path, h, {"kind": "stage", "content_hash": h})


def _job(ctx: _Context, trial: Any, slot: int) -> TrialJob:
    sweep = ctx.sweep
    gates = ctx.loaded.recipe.gates
    assert gates is not None
    rules = list(gates.rules) if sweep.constraints == "gates" else []
    rules += list(sweep.extra_constraints)
    prune = None
    if sweep.pruning is not None and sweep.pruning.enabled:
        p = sweep.pruning
        prune = PruneWith(ctx.storage, ctx.study_name, p.p_threshold, p.increment)
    return TrialJob(
        loaded=ctx.loaded,
        scratch=ctx.scratch / f"slot{slot}",
        folders=ctx.folders,
        number=trial.number,
        trial_id=trial._trial_id,
        params=dict(trial.params),
        stasks=ctx.stasks,
        ev=ctx.ev,
        baselines=ctx.baselines,
        baseline_outcomes=ctx.baseline_outcomes,
        objectives=[(o.metric, o.direction) for o in sweep.objectives],
        constraints=gates.model_copy(update={"rules": rules}),
        prune=prune,
    )


def _loop(
    study: Any,
    ctx: _Context,
    budget: int,
    limit_s: float | None,
    executor: Executor,
    parallel: int | None,
    reporter: Reporter,
) -> int:
    from medrelease.sweep.space import distributions

    dists = distributions(ctx.sweep)
    start = time.monotonic()
    ran = 0
    local = executor.name == "local"
    while (left := budget - len(finished(study))) > 0:
        if hasattr(study.sampler, "is_exhausted") and study.sampler.is_exhausted(study):
            reporter.info(f"the grid is done: {left} trial(s) of the budget left unused")
            break
        if limit_s is not None and time.monotonic() - start >= limit_s:
            reporter.info(f"--timeout {limit_s:g}s reached: {left} trial(s) of the budget left")
            break
        width = min(left, parallel or (1 if local else left))
        asked = [study.ask(dists) for _ in range(width)]
        jobs: list[tuple[Any, TrialJob]] = []
        for slot, trial in enumerate(asked):
            if not _copy_duplicate(study, trial, reporter):
                jobs.append((trial, _job(ctx, trial, slot)))
        units = [
            Unit(
                key=f"trial-{trial.number}",
                label=f"trial {trial.number}: merge + search items",
                fn=run_trial,
                payload=job,
                resources=Resources() if local else _resources(ctx),
            )
            for trial, job in jobs
        ]
        for i, record in executor.run(units, reporter):
            _tell(study, jobs[i][0], record, reporter)
            ran += 1
            if ctx.folder is not None:  # --show and a killed run see every told trial
                from medrelease.sweep.report import write_report

                write_report(study, ctx.loaded, ctx.stasks, ctx.baselines, ctx, ctx.folder)
    return ran


def _resources(ctx: _Context) -> Resources:
    from medrelease.gate.units import unit_resources

    gates = ctx.ev.gates
    path = ctx.baselines[0].path if ctx.baselines else ctx.scratch
    res = unit_resources(gates.backend, ctx.ev.device, gates.model_args, path)
    # the merge holds the inputs and the output too
    return Resources(num_cpus=res.num_cpus, num_gpus=res.num_gpus, memory=res.memory * 2)


def _copy_duplicate(study: Any, trial: Any, reporter: Reporter) -> bool:
    """A parameter set already evaluated is not evaluated again: copy its result."""
    from optuna.trial import TrialState

    for old in finished(study):
        if old.params != trial.params or old.number == trial.number:
            continue
        record = dict(old.user_attrs.get(RECORD) or {})
        record.update(number=trial.number, duplicate_of=old.number, duration_s=0.0)
        trial.set_user_attr(RECORD, record)
        reporter.info(f"trial {trial.number}: same parameters as trial {old.number}, not re-run")
        if old.state == TrialState.COMPLETE:
            set_constraints(trial, list(record.get("constraints") or []))
            study.tell(trial, old.values)
        else:
            study.tell(trial, state=old.state)
        return True
    return False


def _tell(study: Any, trial: Any, record: dict[str, Any], reporter: Reporter) -> None:
    from optuna.trial import TrialState

    retry = trial.user_attrs.get("retry_of")
    if retry is not None:
        record["retry_of"] = retry
    trial.set_user_attr(RECORD, record)
    state = record.get("state")
    values = record.get("values")
    if state == "complete" and values and all(v is not None for v in values):
        set_constraints(trial, list(record.get("constraints") or []))
        study.tell(trial, values)
    elif state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)
    shown = ", ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in record["params"].items())
    vals = ", ".join(_fmt(v) for v in values or [])
    feas = "" if record.get("feasible", True) else " infeasible"
    reporter.info(f"trial {trial.number}: {state}{feas} [{vals}] ({shown})")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
