"""The step protocol: what every step does around its own work, written once.

A step declares its inputs (`<step>/inputs.py`: a `StepInputs` with its name, its tools and
its components) and runs its work inside `step_run`:

    with step_run(INPUTS, loaded, workdir, reporter, sweep=[lambda p: p.quant]) as run:
        ...                        # run.paths, run.reporter, run.hashes, run.timer.lap("x")
        run.record(record)         # tools, timings, components + inputs_hash, manifest
        return StepResult(...)

`step_run` quiets the libraries, takes the release lock, sweeps the temporaries a killed run
left, and starts the step's timer; `record` adds what every record carries (tool versions,
timings, the components the step ran with) and writes it into the manifest under the step's
name. `release`, `status` and the standalone command then judge currency from that record
(core/inputs.py `why_stale`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from medrelease.core.atomic import sweep_stale_temps
from medrelease.core.console import Reporter
from medrelease.core.hashing import HashCache
from medrelease.core.inputs import StepInputs, record_inputs
from medrelease.core.lock import release_lock
from medrelease.core.manifest import Manifest, StepRecord, StepTimer, read_step
from medrelease.core.paths import ReleasePaths

R = TypeVar("R")


@dataclass
class StepRun:
    """One run of a step, inside its lock: where it works and how it records."""

    inputs: StepInputs
    loaded: Any  # LoadedRecipe
    paths: ReleasePaths
    reporter: Reporter
    timer: StepTimer
    hashes: HashCache

    def components(self, manifest: Manifest | None = None) -> dict[str, Any]:
        """What the step depends on, now (its one definition in `<step>/inputs.py`)."""
        manifest = Manifest.load(self.paths.root) if manifest is None else manifest
        return self.inputs.compute(self.loaded, self.paths, manifest, self.hashes)

    def previous(self, kind: type[R]) -> R | None:
        """The step's recorded run, if any, checked against `kind`: its record type, which the
        step passes in (`medrelease.records` is a layer above core). A malformed record is an
        InputError; `--force` runs the step without reading it, and records it again."""
        return read_step(
            Manifest.load(self.paths.root),
            self.inputs.step,
            kind,
            hint=f"run `medrelease {self.inputs.step} RECIPE --force` to record it again "
            "(the record's format: medrelease/records/)",
        )

    def record(
        self,
        record: StepRecord,
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
        record.setdefault("tools", self.inputs.tool_versions())
        record.setdefault("timings", self.timer.summary())
        manifest = Manifest.load(self.paths.root)
        record_inputs(
            record,
            self.components(manifest) if components is None else components,
            getattr(self.loaded, "changes", ()),
        )
        if header:
            manifest.set_header(**header)
        manifest.record_step(self.inputs.step, record)
        return manifest


@contextlib.contextmanager
def step_run(
    inputs: StepInputs,
    loaded: Any,
    workdir: Path,
    reporter: Reporter | None = None,
    *,
    sweep: Sequence[Callable[[ReleasePaths], Path]] = (),
    quiet: bool = True,
) -> Iterator[StepRun]:
    """Lock the release, sweep stale temporaries (the release folder and `sweep`'s folders)
    and yield the run. `quiet=False` for a step that quiets the libraries itself later (the
    quantize step does it in a thread, so that llama.cpp's converter starts sooner)."""
    if quiet:
        from medrelease.core.quiet import quiet_libraries

        quiet_libraries()
    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    with release_lock(paths.root):
        sweep_stale_temps(paths.root)
        for folder in sweep:
            sweep_stale_temps(folder(paths))
        yield StepRun(
            inputs,
            loaded,
            paths,
            reporter or Reporter(),
            StepTimer(),
            HashCache(paths.hash_cache),
        )
