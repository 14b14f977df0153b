"""`manifest.json`: the single record of a release.

Every step writes its record under `steps.<name>`: what went in (sources, revisions, hashes),
what came out (sha256 and size of every file, relative to the release folder), the tools
that did it, and timings. Steps talk to each other only through files and this record.
The file is always replaced atomically, so a killed run leaves the previous consistent version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, Required, TypeVar, cast

from typing_extensions import TypeAliasType, TypedDict  # pydantic reads these before 3.12

from medrelease.core.atomic import atomic_write_json
from medrelease.core.errors import InputError
from medrelease.core.hashing import FileRecord
from medrelease.core.secrets import assert_no_secrets
from medrelease.core.validate import check_record

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

# {"<path relative to the release folder>": FileRecord} (FileRecord: core/hashing.py)
Files = dict[str, FileRecord]

# A value a record keeps as it came (a recipe block, a tool's settings): any JSON, checked as
# JSON when read back (core/validate.py), and narrowed by whoever reads inside it.
Json = TypeAliasType("Json", "str | int | float | bool | None | list[Json] | dict[str, Json]")


class ExecutorRecord(TypedDict, total=False):
    """Where a step's units of work ran (executors/): not an input, the numbers are alike."""

    name: Required[str]  # local | ray
    nodes: int | None  # ray: nodes alive at the end (None: Ray was never started)


class Timings(TypedDict, total=False):
    """`StepTimer.summary()`; quantize adds `background_s` and per-quant `quants_s`."""

    started_at: Required[str]
    finished_at: Required[str]
    duration_s: Required[float]
    phases_s: Required[dict[str, float]]
    background_s: dict[str, float | None]  # None: that work never finished
    quants_s: dict[str, dict[str, float]]


class StepRecord(TypedDict, total=False):
    """What every `steps.<name>` record carries, besides the step's own keys.

    The step writes `status` and `outputs`; the runner (core/runner.py) adds `tools`,
    `timings`, `components` and `inputs_hash`. Each step's full record extends this one
    (`medrelease.records`). Keys are optional where a record written by an earlier version,
    or by hand, may lack them: readers validate what they read (`records.manifest.read_step`).
    """

    status: Required[str]  # done | failed
    outputs: Files
    tools: dict[str, str | None]
    timings: Timings
    components: dict[str, Json]  # core/inputs.py: name -> digest or value
    inputs_hash: str
    changes: list[str]  # the run's overlays and --set assignments (to say where values came from)
    warnings: list[str]


R = TypeVar("R")
Rec = TypeVar("Rec", bound="StepRecord")  # a step's own record type (medrelease.records)


@dataclass(frozen=True)
class StepId(Generic[Rec]):
    """A step as the others see it: its key under `manifest.steps` and its record's type.

    The one spelling of a step's name (`records.manifest` declares the release's steps): the
    step's declaration (`<step>/inputs.py`), the pipeline's table, `STEP_RECORDS` and the
    steps that read an upstream record all take the name from here."""

    name: str
    record: type[Rec]


def read_step(manifest: Manifest, name: str, kind: type[R], *, hint: str | None = None) -> R | None:
    """`steps.<name>` checked against `kind`, its TypedDict (None when the step never ran).

    Readers pass the step's type from `medrelease.records` (records.manifest.STEP_RECORDS):
    a record edited by hand, or truncated, is one InputError naming the key and what to do."""
    rec = manifest.data["steps"].get(name)
    if rec is None:
        return None
    check_record(
        kind,
        rec,
        what=f"the {name} step's record",
        where=str(manifest.path),
        hint=hint
        or f"re-run `medrelease {name} RECIPE` to record it again (the record's format: "
        "medrelease/records/)",
        prefix=f"steps.{name}",
    )
    return cast(R, rec)  # checked just above: `rec` is a `kind`


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def tool_versions(*dists: str) -> dict[str, str | None]:
    """Installed versions of distributions, read from metadata (imports nothing heavy)."""
    out: dict[str, str | None] = {}
    for name in ("medrelease", *dists):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


class Manifest:
    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    @classmethod
    def load(cls, release_dir: Path) -> Manifest:
        path = release_dir / MANIFEST_NAME
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except ValueError as exc:
                raise InputError(
                    f"{path} is not valid JSON ({exc})",
                    hint="restore it from a backup or delete the release folder and re-run",
                ) from None
        else:
            data = {"schema_version": SCHEMA_VERSION, "steps": {}}
        if isinstance(data, dict):
            data.setdefault("steps", {})
        if not isinstance(data, dict) or not isinstance(data["steps"], dict):
            raise InputError(
                f"{path} is malformed: "
                + ("'steps' is not an object" if isinstance(data, dict) else "not an object"),
                hint="restore it from a backup or delete the release folder and re-run",
            )
        return cls(path, data)

    @property
    def release_dir(self) -> Path:
        return self.path.parent

    def step(self, name: str) -> dict[str, Any] | None:
        rec = self.data["steps"].get(name)
        return rec if isinstance(rec, dict) else None

    def set_header(self, *, release: dict[str, Any], recipe: dict[str, Any]) -> None:
        self.data["schema_version"] = SCHEMA_VERSION
        self.data["medrelease_version"] = tool_versions()["medrelease"]
        self.data["release"] = release
        self.data["recipe"] = recipe
        self.data["updated_at"] = now_iso()

    def record_step(self, name: str, record: Mapping[str, Any]) -> None:
        self.data["steps"][name] = record
        self.data["updated_at"] = now_iso()
        self.save()

    def drop_step(self, name: str) -> None:
        if self.data["steps"].pop(name, None) is not None:
            self.save()

    def save(self) -> None:
        assert_no_secrets(json.dumps(self.data, default=str), what=str(self.path))
        atomic_write_json(self.path, self.data)


class StepTimer:
    """Collects named phase durations for a step's `timings` record."""

    def __init__(self) -> None:
        self.started_at = now_iso()
        self._t0 = time.perf_counter()
        self._last = self._t0
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        t = time.perf_counter()
        self.phases[phase] = round(t - self._last, 3)
        self._last = t

    def summary(self) -> Timings:
        return {
            "started_at": self.started_at,
            "finished_at": now_iso(),
            "duration_s": round(time.perf_counter() - self._t0, 3),
            "phases_s": self.phases,
        }
