"""Run the release steps in order; skip a step whose inputs are unchanged since it last ran.

Each step records the input components it ran with in its own manifest record
(`steps.<step>.components`, core/inputs.py); a step is current when those equal its inputs
now and its outputs are intact. A killed run leaves the finished steps recorded, so the next
run resumes at the first step that did not finish.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter, activity
from medrelease.core.errors import RecipeError, UsageError
from medrelease.core.hashing import HashCache
from medrelease.core.inputs import judge, skips
from medrelease.core.lock import release_lock
from medrelease.core.manifest import Manifest, now_iso
from medrelease.core.paths import DEFAULT_WORKDIR, ReleasePaths
from medrelease.core.step import StepResult
from medrelease.pipeline import steps as registry
from medrelease.pipeline.steps import IN_RELEASE, ReleaseOptions, StepDef
from medrelease.recipe.loaded import LoadedRecipe


@dataclass
class StepState:
    name: str
    state: str  # current | stale | pending | not configured | ran | skipped
    why: list[str] = field(default_factory=list)
    finished_at: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    result: StepResult[Any] | None = None  # what the step returned, when this run ran it


@dataclass
class ReleaseRun:
    steps: list[StepState]
    manifest: Path
    notes: list[str] = field(default_factory=list)  # e.g. "the release folder does not exist"

    def summary(self) -> dict[str, Any]:
        return {
            "manifest": str(self.manifest),
            "notes": self.notes,
            "steps": [
                {"step": s.name, "state": s.state, "why": s.why, "outputs": len(s.outputs)}
                for s in self.steps
            ],
        }


def step_state(
    step: StepDef[Any],
    loaded: LoadedRecipe,
    paths: ReleasePaths,
    manifest: Manifest,
    cache: HashCache,
    options: Any = None,
) -> StepState:
    """Current or not, judged from the step's own record (whoever ran it: release or the
    standalone command, with or without --set/--overlay)."""
    if not step.configured(loaded):
        return StepState(step.name, "not configured")
    # the record is checked against its type first: a hand-edited one is a clear error
    verdict = judge(step.inputs, loaded, paths, manifest, cache, destination_options(options))
    record = verdict.record
    timings = record.get("timings") if record is not None else None
    finished = timings.get("finished_at") if timings else None
    outputs = record.get("outputs", {}) if record is not None else {}
    return StepState(step.name, verdict.state, verdict.why, finished, dict(outputs))


def _select(from_step: str | None, only: list[str] | None) -> tuple[set[str], set[str]]:
    """(steps to consider, steps to force)."""
    names = registry.step_names()
    for name in [from_step, *(only or [])]:
        if name is not None and name not in names:
            raise UsageError(f"unknown step {name!r}", hint=f"steps are: {', '.join(names)}")
    if only:
        return set(only), set(only)
    if from_step:
        return set(names), set(names[names.index(from_step) :])
    return set(names), set()


def run_release(
    loaded: LoadedRecipe,
    *,
    workdir: Path = DEFAULT_WORKDIR,
    reporter: Reporter | None = None,
    from_step: str | None = None,
    only: list[str] | None = None,
    publish: bool = True,
    options: ReleaseOptions | None = None,
) -> ReleaseRun:
    """`publish=False` (--no-publish) leaves out the steps whose outputs go to the Hub."""
    reporter = reporter or Reporter()
    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    consider, forced = _select(from_step, only)
    if not publish:
        consider -= {s.name for s in registry.STEPS if s.outputs_on_hub}
    steps = [s for s in registry.STEPS if s.name in consider]
    needing = [s.name for s in steps if s.needs_gates]
    if loaded.recipe.gates is None and needing:
        raise RecipeError(
            "this recipe has no gates: section, and medrelease cards and publishes only a "
            "release whose gates passed (every number in the card comes from them)",
            where=str(loaded.path),
            hint="add a gates: section (see README), or run `--only merge` / `--only quantize`",
        )
    for step in steps:  # seconds each, before any step runs for minutes
        if step.preflight is not None and step.configured(loaded):
            step.preflight(loaded)
    with release_lock(paths.root):  # one release process per folder, for the whole run
        return _run_locked(
            loaded, workdir, paths, reporter, steps, forced, options or ReleaseOptions()
        )


def _run_locked(
    loaded: LoadedRecipe,
    workdir: Path,
    paths: ReleasePaths,
    reporter: Reporter,
    steps: list[StepDef[Any]],
    forced: set[str],
    options: ReleaseOptions,
) -> ReleaseRun:
    states: list[StepState] = []
    cache = HashCache(paths.hash_cache)
    for step in steps:
        manifest = Manifest.load(paths.root)
        opts = step.options(options)
        state = step_state(step, loaded, paths, manifest, cache, opts)
        cache.save()
        if state.state == "not configured":
            states.append(state)
            continue
        # a dry run prints its plan every time: it writes nothing, so it is never "current"
        force = step.name in forced or step.writes_nothing(opts)
        if skips(state.why, force=force, rerun=IN_RELEASE):
            reporter.info(f"[dim]{step.name}: up to date, skipped[/dim]")
            state.state = "skipped"
            states.append(state)
            continue
        reason = "forced" if step.name in forced else ", ".join(state.why)
        reporter.info(f"[bold]{step.name}[/bold]: {step.what} ({reason})")
        # the step records its own components; it re-runs under the same rule (IN_RELEASE)
        with activity(step.name):  # named by the Ctrl-C message
            result = step.run(loaded, workdir, reporter, opts, force)
        if not step.writes_nothing(opts):
            # a log of what `release` ran; currency is decided from the step records only
            manifest = Manifest.load(paths.root)
            manifest.data.setdefault("pipeline", {})[step.name] = {"finished_at": now_iso()}
            manifest.save()
        cache.save()
        states.append(StepState(step.name, "ran", state.why, now_iso(), result=result))
    return ReleaseRun(states, paths.manifest)


def release_status(loaded: LoadedRecipe, *, workdir: Path = DEFAULT_WORKDIR) -> ReleaseRun:
    """Each step's state. Writes nothing into the build (which may be read-only, or not
    exist): file digests computed here are kept only in the per-user cache."""
    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    notes = []
    if not paths.root.is_dir():
        notes.append(
            f"{paths.root} does not exist: nothing has run there yet"
            + ("" if workdir.is_dir() else f" (no folder {workdir}: check --workdir)")
        )
    manifest = Manifest.load(paths.root)
    cache = HashCache(paths.hash_cache)  # read, never saved into the build
    states = []
    stale_upstream: list[str] = []  # earlier steps stale (or pending) on their own account
    for step in registry.STEPS:
        state = step_state(step, loaded, paths, manifest, cache)
        if stale_upstream and state.state == "current":
            state.state = "stale"
            state.why = [upstream_stale(stale_upstream)]
        elif state.state in ("stale", "pending"):
            stale_upstream.append(step.name)
        states.append(state)
    if cache.shared is not None:
        cache.shared.save()  # the per-user layer (large files), outside the build
    return ReleaseRun(states, paths.manifest, notes)


def upstream_stale(names: list[str]) -> str:
    """Why a step whose own inputs are unchanged is stale: the earlier steps that will re-run
    (e.g. "upstream merge is stale"); a step merely downstream of those is not named."""
    if len(names) == 1:
        return f"upstream {names[0]} is stale"
    return f"upstream {', '.join(names[:-1])} and {names[-1]} are stale"


def destination_options(options: Any) -> dict[str, Any] | None:
    """A step's typed options as the mapping its destination reads (publish: target and
    endpoint); None without options (`status` judges the last publish's destination)."""
    if options is None or not is_dataclass(options) or isinstance(options, type):
        return None
    return asdict(options)
