"""What a step's outputs depend on, and whether its recorded run is still current.

Each step declares its inputs once, in `<step>/inputs.py`, as named components (recipe
section, referenced files, upstream outputs, stage identities, tool versions). The step
records the components it ran with in its own manifest record (`steps.<name>.components`);
`release`, `status` and the standalone command all decide currency from that one record, so
a standalone run with `--set`/`--overlay` is judged like any other run.

Components are kept as data (the recipe keys a step reads, `{stage: identity}`,
`{file: sha256}`, `{tool: version}`), not folded into one digest, so that `status` can say
which key, stage, file, step or tool changed, with the old and new values (core/why.py).
Nothing in them is a path on this machine: a build that is moved or copied, or stages copied
elsewhere with the same bytes, is still current.

Computing components must stay cheap (a cached re-run of a whole release takes seconds):
file digests come from the stat-keyed hash cache, tool versions from package metadata, and
nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Generic

from medrelease.core.hashing import HashCache, digest_of, folder_records, sha256_file
from medrelease.core.manifest import Manifest, Rec, StepId, StepRecord, read_step, tool_versions
from medrelease.core.paths import ReleasePaths

# (loaded recipe, release paths, manifest, hash cache) -> {component name: value}
ComponentsFn = Callable[[Any, ReleasePaths, Manifest, HashCache], dict[str, Any]]
# the same plus the run's options (publish: --target/--endpoint; None when `status` asks)
DestinationFn = Callable[
    [Any, ReleasePaths, Manifest, HashCache, Mapping[str, Any] | None], dict[str, Any]
]


class Rerun(Enum):
    """What a standalone run of a step does when the step has run before (declared per step).

    `release` acts as SKIP for every step: a current step is skipped, a stale one re-run,
    replacing outputs that are the release's own (recorded by that step)."""

    SKIP = "skips when current"  # `--force` re-runs anyway (quantize: minutes to hours)
    REFUSE = "refuses to overwrite"  # its output folder exists: exit 2; `--force` replaces it
    ALWAYS = "always runs"  # cheap, or caches its own work, or compares with its destination


@dataclass(frozen=True)
class StepInputs(Generic[Rec]):
    """One step's declaration: who it is, what its outputs depend on, how it reruns.

    The name and the record type come from `id` (`records.manifest`), spelled once."""

    id: StepId[Rec]
    tools: tuple[str, ...]  # distributions whose version can change the outputs
    components: ComponentsFn  # everything else, named so `status` can say why
    rerun: Rerun = Rerun.ALWAYS  # a standalone run of a step that ran before
    # the folder a REFUSE step will not overwrite without --force
    output: Callable[[ReleasePaths], Path] | None = None
    # its outputs live on the Hub, not on disk: currency does not check files (publish's
    # plan compares with the remote), and `release --no-publish` leaves the step out
    outputs_on_hub: bool = False
    # where the outputs go and what is there now (publish: destination and remote state)
    destination: DestinationFn | None = None

    @property
    def step(self) -> str:
        return self.id.name

    def compute(
        self,
        loaded: Any,
        paths: ReleasePaths,
        manifest: Manifest,
        cache: HashCache,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        comp: dict[str, Any] = {"tools": tool_versions(*self.tools)}
        comp.update(self.components(loaded, paths, manifest, cache))
        if self.destination is not None:
            comp.update(self.destination(loaded, paths, manifest, cache, options))
        return comp

    def tool_versions(self) -> dict[str, str | None]:
        return tool_versions(*self.tools)

    def previous(self, manifest: Manifest) -> Rec | None:
        """The step's recorded run, checked against its record type first: a malformed record
        is one InputError naming the key and the command that records it again."""
        again = "" if self.rerun is Rerun.ALWAYS else " --force"  # else it would stop again
        return read_step(
            manifest,
            self.step,
            self.id.record,
            hint=f"run `medrelease {self.step} RECIPE{again}` to record it again "
            "(the record's format: medrelease/records/)",
        )


@dataclass
class Verdict(Generic[Rec]):
    """A step's recorded run judged against its inputs now."""

    record: Rec | None
    components: dict[str, Any]
    why: list[str]  # [] when current

    @property
    def state(self) -> str:
        """current | pending (never ran) | stale."""
        if not self.why:
            return "current"
        return "pending" if self.why == ["never run"] else "stale"


def judge(
    inputs: StepInputs[Rec],
    loaded: Any,
    paths: ReleasePaths,
    manifest: Manifest,
    cache: HashCache,
    options: Mapping[str, Any] | None = None,
) -> Verdict[Rec]:
    """Is the step current? The one judgement behind `status`, `release` and a standalone run.

    `options`: the run's destination options (publish: target, endpoint); None for `status`,
    which judges publish at the destination of the last publish."""
    record = inputs.previous(manifest)
    components = inputs.compute(loaded, paths, manifest, cache, options)
    why = why_stale(
        record,
        components,
        paths,
        cache,
        check_outputs=not inputs.outputs_on_hub,
        changes=getattr(loaded, "changes", ()),
    )
    return Verdict(record, components, why)


def skips(why: Sequence[str], *, force: bool, rerun: Rerun) -> bool:
    """The one rule, for `release` (rerun=SKIP) and a standalone run (the step's own rerun):
    a step that skips when current is skipped when its recorded run is current, unless
    forced (`--force`, `release --from/--only`). `why`: the verdict's reasons ([]: current)."""
    return rerun is Rerun.SKIP and not force and not why


def record_inputs(
    record: StepRecord, components: dict[str, Any], changes: Sequence[str] = ()
) -> None:
    """Put the components a step ran with into its manifest record (and their digest).

    `changes`: the run's overlays and `--set` assignments (LoadedRecipe.changes), kept so
    that a later `status` can say a value came from the command line.
    `record`: any step's typed record (each extends StepRecord, medrelease.records); a
    TypedDict is not a MutableMapping to mypy, so StepRecord is the type that takes them all."""
    record["components"] = components
    record["inputs_hash"] = digest_of(components)
    record["changes"] = list(changes)


def why_stale(
    record: Mapping[str, Any] | None,
    components: dict[str, Any],
    paths: ReleasePaths,
    cache: HashCache,
    *,
    check_outputs: bool = True,
    changes: Sequence[str] = (),
) -> list[str]:
    """Why the step's recorded run no longer matches its inputs; [] when it is current.

    Each reason names its component and what in it changed (core/why.py); `changes` are the
    current run's overlays and `--set` assignments, to say where a recipe value comes from."""
    if not record or "components" not in record:
        return ["never run"]
    if record.get("status") != "done":
        return [f"last run {record.get('status') or 'did not finish'}"]
    from medrelease.core.why import explain, set_paths

    old = record["components"]
    now_sets, then_sets = set_paths(changes), set_paths(record.get("changes") or [])
    why = [
        explain(k, old.get(k), components.get(k), sets_now=now_sets, sets_then=then_sets)
        for k in sorted(set(old) | set(components))
        if old.get(k) != components.get(k)
    ]
    if not why and check_outputs and not outputs_intact(record, paths, cache):
        why = ["outputs changed or missing on disk"]
    return why


def outputs_intact(record: Mapping[str, Any] | None, paths: ReleasePaths, cache: HashCache) -> bool:
    """True when every file the step recorded is on disk with the recorded size and sha256.

    The sha256 comes through the stat-keyed hash cache, so an untouched file costs a stat.
    """
    if not record:
        return False
    for rel, info in (record.get("outputs") or {}).items():
        p = paths.root / rel
        if not p.is_file() or p.stat().st_size != info.get("size"):
            return False
        if sha256_file(p, cache) != info.get("sha256"):
            return False
    return True


def outputs_digest(manifest: Manifest, step: str) -> str | None:
    """An upstream step's outputs as one digest (None before it ran)."""
    rec = manifest.step(step)
    return digest_of(rec.get("outputs")) if rec else None


def referenced_files(section: Any, base_dir: Path, cache: HashCache) -> dict[str, str]:
    """sha256 of every file a recipe section names (templates, task YAMLs, calibration text).

    For a task YAML, its whole folder counts (it usually sits beside its data files).
    """
    found: dict[str, str] = {}

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v and len(v) < 500 and "\n" not in v:
            p = (base_dir / v).expanduser()
            try:
                if p.is_file():
                    found[v] = sha256_file(p, cache)
                    if p.suffix in (".yaml", ".yml"):
                        for sib in sorted(p.parent.iterdir()):
                            if sib.is_file() and sib != p:
                                found[f"{v}::{sib.name}"] = sha256_file(sib, cache)
                elif p.is_dir():
                    found[v] = digest_of(folder_records(p, cache))
            except OSError:
                pass

    walk(section)
    return found


def section(loaded: Any, name: str) -> Any:
    """A recipe section as JSON-able data (None when the recipe has none)."""
    value = getattr(loaded.recipe, name)
    return value.model_dump(mode="json") if value is not None else None
