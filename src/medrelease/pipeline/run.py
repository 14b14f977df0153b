"""Run the release steps in order; skip a step whose inputs are unchanged since it last ran.

Each step records the input components it ran with in its own manifest record
(`steps.<step>.components`, core/inputs.py); a step is current when those equal its inputs
now and its outputs are intact. A killed run leaves the finished steps recorded, so the next
run resumes at the first step that did not finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.errors import RecipeError, UsageError
from medrelease.core.hashing import HashCache
from medrelease.core.inputs import why_stale
from medrelease.core.lock import release_lock
from medrelease.core.manifest import Manifest, now_iso
from medrelease.core.paths import DEFAULT_WORKDIR, ReleasePaths
from medrelease.pipeline.steps import STEP_NAMES, STEPS, StepDef
from medrelease.recipe.load import LoadedRecipe
from medrelease.records.manifest import STEP_RECORDS, StepRecord, read_step


@dataclass
class StepState:
    name: str
    state: str  # current | stale | pending | not configured | ran | skipped
    why: list[str] = field(default_factory=list)
    finished_at: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReleaseRun:
    steps: list[StepState]
    manifest: Path

    def summary(self) -> dict[str, Any]:
        return {
            "manifest": str(self.manifest),
            "steps": [
                {"step": s.name, "state": s.state, "why": s.why, "outputs": len(s.outputs)}
                for s in self.steps
            ],
        }


def step_state(
    step: StepDef, loaded: LoadedRecipe, paths: ReleasePaths, manifest: Manifest, cache: HashCache
) -> StepState:
    """Current or not, judged from the step's own record (whoever ran it: release or the
    standalone command, with or without --set/--overlay)."""
    if not step.configured(loaded):
        return StepState(step.name, "not configured")
    # checked against its type first: a hand-edited record is a clear error, not a KeyError
    record = read_step(manifest, step.name, STEP_RECORDS.get(step.name, StepRecord))
    components = step.inputs.compute(loaded, paths, manifest, cache)
    # publish's outputs live on the Hub, not on disk; the plan compares them with the remote
    why = why_stale(record, components, paths, cache, check_outputs=step.name != "publish")
    state = "current" if not why else ("pending" if why == ["never run"] else "stale")
    timings = record.get("timings") if record is not None else None
    finished = timings.get("finished_at") if timings else None
    outputs = record.get("outputs", {}) if record is not None else {}
    return StepState(step.name, state, why, finished, dict(outputs))


def _select(from_step: str | None, only: list[str] | None) -> tuple[set[str], set[str]]:
    """(steps to consider, steps to force)."""
    for name in [from_step, *(only or [])]:
        if name is not None and name not in STEP_NAMES:
            raise UsageError(f"unknown step {name!r}", hint=f"steps are: {', '.join(STEP_NAMES)}")
    if only:
        return set(only), set(only)
    if from_step:
        forced = set(STEP_NAMES[STEP_NAMES.index(from_step) :])
        return set(STEP_NAMES), forced
    return set(STEP_NAMES), set()


def run_release(
    loaded: LoadedRecipe,
    *,
    workdir: Path = DEFAULT_WORKDIR,
    reporter: Reporter | None = None,
    from_step: str | None = None,
    only: list[str] | None = None,
    publish: bool = True,
    publish_options: dict[str, Any] | None = None,
) -> ReleaseRun:
    reporter = reporter or Reporter()
    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    consider, forced = _select(from_step, only)
    if not publish:
        consider.discard("publish")
    opts = dict(publish_options or {})
    if loaded.recipe.gates is None and consider & {"card", "publish"}:
        raise RecipeError(
            "this recipe has no gates: section, and medrelease cards and publishes only a "
            "release whose gates passed (every number in the card comes from them)",
            where=str(loaded.path),
            hint="add a gates: section (see README), or run `--only merge` / `--only quantize`",
        )
    if "quantize" in consider and loaded.recipe.quantize is not None:
        # AWQ shape problems show in seconds from a stage's config, not after merge and gate
        from medrelease.quantize.awq.preflight import recipe_preflight

        recipe_preflight(loaded)
    with release_lock(paths.root):  # one release process per folder, for the whole run
        return _run_locked(loaded, workdir, paths, reporter, consider, forced, opts)


def _run_locked(
    loaded: LoadedRecipe,
    workdir: Path,
    paths: ReleasePaths,
    reporter: Reporter,
    consider: set[str],
    forced: set[str],
    opts: dict[str, Any],
) -> ReleaseRun:
    states: list[StepState] = []
    cache = HashCache(paths.hash_cache)
    for step in STEPS:
        if step.name not in consider:
            continue
        manifest = Manifest.load(paths.root)
        state = step_state(step, loaded, paths, manifest, cache)
        cache.save()
        if state.state == "not configured":
            states.append(state)
            continue
        if state.state == "current" and step.name not in forced and not _always(step, opts):
            reporter.info(f"[dim]{step.name}: up to date, skipped[/dim]")
            state.state = "skipped"
            states.append(state)
            continue
        reason = "forced" if step.name in forced else ", ".join(state.why)
        reporter.info(f"[bold]{step.name}[/bold]: {step.what} ({reason})")
        step.run(loaded, workdir, reporter, opts)  # the step records its own components
        if not (step.name == "publish" and opts.get("dry_run")):
            # a log of what `release` ran; currency is decided from the step records only
            manifest = Manifest.load(paths.root)
            manifest.data.setdefault("pipeline", {})[step.name] = {"finished_at": now_iso()}
            manifest.save()
        cache.save()
        states.append(StepState(step.name, "ran", state.why, now_iso()))
    return ReleaseRun(states, paths.manifest)


def _always(step: StepDef, opts: dict[str, Any]) -> bool:
    # a dry run prints the plan every time; it writes nothing so it is never "current"
    return step.name == "publish" and bool(opts.get("dry_run"))


def release_status(loaded: LoadedRecipe, *, workdir: Path = DEFAULT_WORKDIR) -> ReleaseRun:
    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    manifest = Manifest.load(paths.root)
    cache = HashCache(paths.hash_cache)
    states = []
    stale_upstream = False
    for step in STEPS:
        state = step_state(step, loaded, paths, manifest, cache)
        if stale_upstream and state.state == "current":
            state.state = "stale"
            state.why = ["an earlier step is stale"]
        if state.state in ("stale", "pending"):
            stale_upstream = True
        states.append(state)
    cache.save()
    return ReleaseRun(states, paths.manifest)
