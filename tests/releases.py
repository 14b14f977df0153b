"""One factory for "a release built up to step N", for every test that needs one.

`built_release(root, upto, recipe)` writes `recipe` to root/recipe.yaml and builds the release
in the build folder (root/build unless `workdir` says otherwise) through the real steps, in the
release's order (pipeline/steps.py `STEPS`, run as `release` runs them), up to and including
`upto`. A step the recipe does not configure is passed over, as `release` does.

A test may stand in for a step whose work it does not test (`given={step: StandIn(...)}`, or
`merged=` for the merge): the stand-in's files and record are written where the step would
write them. The quantize and gate tests stand in for the merge with a copy of a tiny model (the
steps read only merged/); the card and publish tests stand in for the gate, quantize and card
with records whose numbers they assert digit for digit. Everything else is the real step.

Calling it again on the same folders redoes nothing: a real step skips when current
(`release`'s rule), and a stood-in folder already there is kept.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medrelease.core.hashing import FileRecord

# a stand-in file's content: text, bytes, JSON data (written indented), or a file or folder
# to copy
Content = str | bytes | Mapping[str, Any] | Path


def file_records(root: Path, rels: list[str]) -> dict[str, FileRecord]:
    """{rel: {sha256, size}} of files under the release folder, as a step records them."""
    from medrelease.core.hashing import file_record

    return {rel: file_record(root / rel) for rel in sorted(rels)}


@dataclass
class StandIn:
    """A step's outputs written by the test instead of the step.

    `files`: path relative to the release folder -> content. `record`: the step's manifest
    record (or a function of the release folder returning it); without `outputs`, it gets the
    records of every file written. None: no record (a step that only reads files)."""

    files: Mapping[str, Content] = field(default_factory=dict)
    record: Mapping[str, Any] | Callable[[Path], Mapping[str, Any]] | None = None
    header: Mapping[str, Any] | None = None  # manifest header fields (`release`, ...)


@dataclass
class BuiltRelease:
    """The recipe and build folder of a release built by `built_release`.

    It unpacks as `recipe, workdir = built_release(...)`."""

    recipe: Path
    workdir: Path
    results: dict[str, Any] = field(default_factory=dict)  # step -> StepResult (real steps)

    def __iter__(self) -> Iterator[Path]:
        return iter((self.recipe, self.workdir))

    @property
    def name(self) -> str:
        return str(yaml.safe_load(self.recipe.read_text())["release"]["name"])

    @property
    def root(self) -> Path:
        return self.workdir / self.name

    def load(self, *, check_merge: bool = True) -> Any:
        from medrelease.pipeline.recipes import load_recipe

        return load_recipe(self.recipe, check_merge=check_merge)

    def manifest(self) -> dict[str, Any]:
        return dict(json.loads((self.root / "manifest.json").read_text()))

    def write_manifest(self, data: dict[str, Any]) -> None:
        (self.root / "manifest.json").write_text(json.dumps(data, indent=2))

    def set_gate(self, passed: bool) -> None:
        """Rewrite the gate report and its manifest record with a given verdict."""
        from medrelease.core.hashing import file_record

        report_path = self.root / "gates" / "report.json"
        report = json.loads(report_path.read_text())
        report["passed"] = passed
        report["rules"][0]["passed"] = passed
        report_path.write_text(json.dumps(report, indent=2))
        data = self.manifest()
        data["steps"]["gate"]["passed"] = passed
        data["steps"]["gate"]["status"] = "done" if passed else "failed"  # as gate/step.py does
        data["steps"]["gate"]["report"] = {"gates/report.json": file_record(report_path)}
        self.write_manifest(data)


def built_release(
    root: Path,
    upto: str,
    recipe: Mapping[str, Any] | Path,
    *,
    workdir: Path | None = None,
    merged: Path | None = None,
    chat_template: str | None = None,
    given: Mapping[str, StandIn] | None = None,
) -> BuiltRelease:
    """The release of `recipe` built up to step `upto` (a step's name), that step included.

    `recipe`: its data (written to root/recipe.yaml), or a recipe file already written.
    `merged`: a model folder standing in for the merge (copied to merged/); `chat_template`:
    written into merged/tokenizer_config.json when it has none. `given`: stand-ins for other
    steps. The recipe's merge block is checked (mergekit) only when the merge is real."""
    from medrelease.core.console import Reporter
    from medrelease.pipeline import steps as registry
    from medrelease.pipeline.recipes import load_recipe

    stand_ins = dict(given or {})
    if merged is not None:
        stand_ins["merge"] = StandIn(files={"merged": merged})
    names = [s.name for s in registry.STEPS]
    if upto not in names:
        raise ValueError(f"unknown step {upto!r}: one of {', '.join(names)}")
    unknown = set(stand_ins) - set(names)
    if unknown:
        raise ValueError(f"stand-ins for unknown steps: {sorted(unknown)}")

    root.mkdir(parents=True, exist_ok=True)
    if isinstance(recipe, Path):
        path = recipe
    else:
        path = root / "recipe.yaml"
        path.write_text(yaml.safe_dump(dict(recipe), sort_keys=False))
    built = BuiltRelease(path, root / "build" if workdir is None else workdir)
    check_merge = "merge" not in stand_ins
    loaded = None  # loaded for the first real step: a recipe may be wrong on purpose
    options = registry.ReleaseOptions()
    for step in registry.STEPS[: names.index(upto) + 1]:
        if step.name in stand_ins:
            _write_stand_in(built.root, step.name, stand_ins[step.name])
            continue
        loaded = loaded or load_recipe(path, check_merge=check_merge)
        if step.configured(loaded):
            reporter = Reporter(quiet=True)
            opts = step.options(options)
            built.results[step.name] = step.run(loaded, built.workdir, reporter, opts, False)
    if chat_template is not None:
        _add_chat_template(built.root / "merged", chat_template)
    return built


def _write_stand_in(root: Path, step: str, stand_in: StandIn) -> None:
    from medrelease.core.manifest import Manifest

    written: list[str] = []
    for rel, content in stand_in.files.items():
        written += _write(root, rel, content)
    if stand_in.record is None and stand_in.header is None:
        return
    manifest = Manifest.load(root)
    manifest.data.update(stand_in.header or {})
    if stand_in.record is None:
        manifest.save()
        return
    record = dict(stand_in.record(root) if callable(stand_in.record) else stand_in.record)
    record.setdefault("outputs", file_records(root, written))
    manifest.record_step(step, record)


def _write(root: Path, rel: str, content: Content) -> list[str]:
    """Write one stand-in file (or copy a folder); returns the files' paths under `root`."""
    dest = root / rel
    if isinstance(content, Path) and content.is_dir():
        if not dest.exists():  # already stood in: kept (a second build redoes nothing)
            shutil.copytree(content, dest)
        return [p.relative_to(root).as_posix() for p in sorted(dest.rglob("*")) if p.is_file()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Path):
        shutil.copy(content, dest)
    elif isinstance(content, bytes):
        dest.write_bytes(content)
    elif isinstance(content, str):
        dest.write_text(content)
    else:
        dest.write_text(json.dumps(content, indent=2))
    return [rel]


def _add_chat_template(merged: Path, template: str) -> None:
    cfg_path = merged / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.setdefault("chat_template", template)
    cfg_path.write_text(json.dumps(cfg, indent=2))
