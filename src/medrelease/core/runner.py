"""The step protocol: what every step does around its own work, written once.

A step declares itself (`<step>/inputs.py`: a `StepInputs` with its id, its tools, its
components and what it does when it ran before) and runs its work inside `step_run`:

    with step_run(INPUTS, loaded, workdir, reporter, force=force) as run:
        if run.skipped:            # current, and the step skips when current
            return run.skipped
        ...                        # run.paths, run.reporter, run.hashes, run.timer.lap("x")
        run.record(record)         # tools, timings, components + inputs_hash, manifest
        return StepResult(...)

`step_run` quiets the libraries, takes the release lock, sweeps the temporaries a killed run
left, applies the step's rerun rule (core/inputs.py `Rerun`: skip when current, refuse to
overwrite, or always run; `release` asks every step to skip when current) and starts the
step's timer; `record` adds what every record carries (tool versions, timings, the components
the step ran with) and writes it into the manifest under the step's name. `release`,
`status` and the standalone command judge currency from that record (core/inputs.py `judge`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic

from medrelease.core.atomic import sweep_stale_temps
from medrelease.core.console import Reporter
from medrelease.core.errors import UsageError
from medrelease.core.hashing import HashCache
from medrelease.core.inputs import Rerun, StepInputs, judge, record_inputs, skips
from medrelease.core.lock import release_lock
from medrelease.core.manifest import Manifest, Rec, StepRecord, StepTimer
from medrelease.core.paths import ReleasePaths
from medrelease.core.quiet import quiet_libraries
from medrelease.core.step import StepResult


@dataclass
class StepRun(Generic[Rec]):
    """One run of a step, inside its lock: where it works and how it records."""

    inputs: StepInputs[Rec]
    loaded: Any  # LoadedRecipe
    paths: ReleasePaths
    reporter: Reporter
    timer: StepTimer
    hashes: HashCache
    # the recorded run's result when the rerun rule skips this run (the step returns it)
    skipped: StepResult[Rec] | None = None

    def components(self, manifest: Manifest | None = None) -> dict[str, Any]:
        """What the step depends on, now (its one definition in `<step>/inputs.py`)."""
        manifest = Manifest.load(self.paths.root) if manifest is None else manifest
        return self.inputs.compute(self.loaded, self.paths, manifest, self.hashes)

    def record(
        self,
        record: Rec,
        components: dict[str, Any] | None = None,
        *,
        header: dict[str, Any] | None = None,
    ) -> Manifest:
        """Complete `record` (tools, timings, components) and write it into the manifest.

        `components`: the ones computed before the work (a step that decided to run from
        them records exactly those); by default they are computed now, over the outputs
        just written. `header`: manifest header fields to set in the same write.
        `record`: the step's typed record (a `core.manifest.StepRecord` extended in
        `medrelease.records`), completed in place."""
        common: StepRecord = record  # the fields every record carries
        common.setdefault("tools", self.inputs.tool_versions())
        common.setdefault("timings", self.timer.summary())
        manifest = Manifest.load(self.paths.root)
        record_inputs(
            common,
            self.components(manifest) if components is None else components,
            getattr(self.loaded, "changes", ()),
        )
        if header:
            manifest.set_header(**header)
        manifest.record_step(self.inputs.step, common)
        return manifest


@contextlib.contextmanager
def step_run(
    inputs: StepInputs[Rec],
    loaded: Any,
    workdir: Path,
    reporter: Reporter | None = None,
    *,
    force: bool = False,
    rerun: Rerun | None = None,
    sweep: Sequence[Callable[[ReleasePaths], Path]] = (),
    quiet: bool = True,
) -> Iterator[StepRun[Rec]]:
    """Lock the release, sweep stale temporaries (the release folder and `sweep`'s folders),
    apply the rerun rule and yield the run. `rerun`: the step's own (`inputs.rerun`) for a
    standalone run; `release` passes `Rerun.SKIP`, having judged the step stale (or forced).
    `quiet=False` for a step that quiets the libraries itself later (the quantize step does
    it in a thread, so that llama.cpp's converter starts sooner)."""
    rerun = inputs.rerun if rerun is None else rerun
    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    with release_lock(paths.root):
        sweep_stale_temps(paths.root)
        for folder in sweep:
            sweep_stale_temps(folder(paths))
        run = StepRun(
            inputs, loaded, paths, reporter or Reporter(), StepTimer(), HashCache(paths.hash_cache)
        )
        run.skipped = _apply_rerun(run, force, rerun)
        if quiet and run.skipped is None:  # it imports transformers: not for a skip
            quiet_libraries()
        yield run


def _apply_rerun(run: StepRun[Rec], force: bool, rerun: Rerun) -> StepResult[Rec] | None:
    """The step's recorded run, when the rule says to skip; raises when it says to refuse."""
    output = run.inputs.output(run.paths) if run.inputs.output is not None else None
    if rerun is Rerun.REFUSE and not force and output is not None and output.exists():
        raise UsageError(
            f"output folder {output} already exists",
            hint="pass --force to replace it, or choose another --workdir",
        )
    if rerun is not Rerun.SKIP or force:  # nothing to judge: it runs
        return None
    verdict = judge(run.inputs, run.loaded, run.paths, Manifest.load(run.paths.root), run.hashes)
    run.hashes.save()
    if not skips(verdict.why, force=force, rerun=rerun) or verdict.record is None:
        return None
    run.reporter.info(f"{run.inputs.step}: inputs unchanged since the recorded run; nothing to do")
    return StepResult(run.inputs.step, verdict.record, run.paths.manifest, skipped=True)
