"""Adding a step touches its own package plus one registration (docs/CONTRACTS.md, "Adding a
step"), shown on a step that is nowhere in src/.

The step, `checksums`, lives in a module written into the test's folder: its own StepId and
record type, its StepInputs (what it depends on: the release's version and the merge's
outputs), and its work inside `step_run`, writing one file under the release folder. One
StepDef inserted into `pipeline/steps.py` STEPS registers it. With nothing else changed,
`release` (the library entry the CLI calls, and the CLI itself), `status`, `--only`, `--from`,
the skip-when-current rule, the manifest record and the "why stale" reasons all treat it as
one of the release's steps.
"""

from __future__ import annotations

import importlib
import json
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from gate.gatehelpers import gate_recipe, write_demo_task
from helpers import run_cli
from releases import BuiltRelease, built_release

STEP_SOURCE = '''
"""A step that writes the sha256 of every merged file into checksums/SHA256SUMS."""

from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.hashing import file_record
from medrelease.core.inputs import Rerun, StepInputs, outputs_digest, section
from medrelease.core.manifest import StepId, StepRecord
from medrelease.core.runner import step_run
from medrelease.core.step import StepResult


class ChecksumsRecord(StepRecord, total=False):
    files: int


CHECKSUMS = StepId("checksums", ChecksumsRecord)


def _components(loaded: Any, paths: Any, manifest: Any, cache: Any) -> dict[str, Any]:
    return {
        "recipe": {"release": {"version": section(loaded, "release")["version"]}},
        "upstream": {"merge": outputs_digest(manifest, "merge")},
    }


INPUTS = StepInputs(CHECKSUMS, (), _components, rerun=Rerun.SKIP)


def checksums_release(
    loaded: Any,
    *,
    workdir: Path,
    reporter: Reporter | None = None,
    force: bool = False,
    rerun: Rerun | None = None,
) -> StepResult[ChecksumsRecord]:
    with step_run(INPUTS, loaded, workdir, reporter, force=force, rerun=rerun) as run:
        if run.skipped:
            return run.skipped
        merged = run.paths.merged
        lines = [
            f"{file_record(p)['sha256']}  {p.relative_to(merged)}"
            for p in sorted(merged.rglob("*"))
            if p.is_file()
        ]
        out = run.paths.root / "checksums" / "SHA256SUMS"
        out.parent.mkdir(exist_ok=True)
        out.write_text("\\n".join(lines) + "\\n")
        rel = "checksums/SHA256SUMS"
        record: ChecksumsRecord = {
            "status": "done",
            "files": len(lines),
            "outputs": {rel: file_record(out)},
        }
        run.record(record)
        return StepResult(CHECKSUMS.name, record, run.paths.manifest)
'''


def _step_module(folder: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    folder.mkdir()
    (folder / "checksums_step.py").write_text(textwrap.dedent(STEP_SOURCE))
    monkeypatch.syspath_prepend(str(folder))
    return importlib.import_module("checksums_step")


def _register(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one registration: a StepDef at its place in STEPS (after the card)."""
    from medrelease.pipeline import steps

    def run(loaded: Any, workdir: Path, reporter: Any, opts: Any, force: bool) -> Any:
        return module.checksums_release(
            loaded, workdir=workdir, reporter=reporter, force=force, rerun=steps.IN_RELEASE
        )

    step = steps.StepDef(
        module.INPUTS, "write the merged files' checksums", lambda o: steps.NoOptions(), run
    )
    at = [s.name for s in steps.STEPS].index("card") + 1
    monkeypatch.setattr(steps, "STEPS", (*steps.STEPS[:at], step, *steps.STEPS[at:]))


def _recipe(root: Path, llama: dict[str, Path]) -> dict[str, Any]:
    """The gate tests' recipe (stages base, sft, dpo), gated on a few items of the local task
    and carded."""
    write_demo_task(root / "tasks", relative=True)
    task = {"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml", "limit": 4}
    gates = {"device": "cpu", "tasks": [task], "rules": [{"metric": "demo_mcq/acc", "min": 0.0}]}
    licenses = dict.fromkeys(("base", "sft", "dpo"), "apache-2.0")
    return {**gate_recipe(llama, gates), "card": {"stage_licenses": licenses}}


def _states(built: BuiltRelease, **kw: Any) -> dict[str, str]:
    from medrelease.pipeline.run import run_release

    run = run_release(built.load(), workdir=built.workdir, publish=False, **kw)
    return {s.name: s.state for s in run.steps}


def _status(built: BuiltRelease, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert run_cli("status", built.recipe, "--workdir", built.workdir, "--json") == 0
    return {s["step"]: s for s in json.loads(capsys.readouterr().out)["steps"]}


@pytest.mark.slow
def test_a_new_step_needs_its_module_and_one_registration(
    tmp_path: Path,
    llama: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = _step_module(tmp_path / "step", monkeypatch)
    _register(module, monkeypatch)
    # the release's steps before it, through the real steps (merge, gate, card)
    built = built_release(tmp_path, "card", _recipe(tmp_path, llama))

    # status lists it in its place, never run; the steps before it are current
    status = _status(built, capsys)
    assert list(status) == ["merge", "gate", "quantize", "card", "checksums", "publish"]
    assert status["checksums"]["state"] == "pending"
    assert status["checksums"]["why"] == ["never run"]
    assert {status[s]["state"] for s in ("merge", "gate", "card")} == {"current"}

    # release runs it (and only it: the rest is current), records it and logs it
    states = _states(built)
    assert states == {
        "merge": "skipped",
        "gate": "skipped",
        "quantize": "not configured",
        "card": "skipped",
        "checksums": "ran",
    }
    sums = built.root / "checksums" / "SHA256SUMS"
    assert "model.safetensors" in sums.read_text()
    manifest = built.manifest()
    record = manifest["steps"]["checksums"]
    assert record["status"] == "done" and record["files"] >= 3
    assert set(record["outputs"]) == {"checksums/SHA256SUMS"}
    assert record["components"]["recipe"] == {"release": {"version": "0.1.0"}}
    assert record["inputs_hash"] and record["timings"]["finished_at"]
    assert "checksums" in manifest["pipeline"]

    # skip when current: in release, and when the step runs alone under its own rule
    assert _states(built)["checksums"] == "skipped"
    assert module.checksums_release(built.load(), workdir=built.workdir).skipped
    assert _status(built, capsys)["checksums"]["state"] == "current"

    # --only and --from name it like any step: forced, the steps before it left alone
    assert _states(built, only=["checksums"]) == {"checksums": "ran"}
    from_it = _states(built, from_step="checksums")
    assert from_it["checksums"] == "ran" and from_it["card"] == "skipped"

    # the CLI takes its name with no table of names to extend; a typo lists it
    assert run_cli("release", built.recipe, "-w", built.workdir, "--only", "checksums") == 0
    assert run_cli("release", built.recipe, "-w", built.workdir, "--only", "checksum") == 2
    assert "merge, gate, quantize, card, checksums, publish" in capsys.readouterr().err

    # why stale: a recipe key it reads, its outputs on disk, and the step above it
    data = yaml.safe_load(built.recipe.read_text())
    data["release"]["version"] = "0.2.0"
    built.recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    assert _status(built, capsys)["checksums"]["why"] == ["recipe: release.version 0.1.0 → 0.2.0"]
    data["release"]["version"] = "0.1.0"
    built.recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    sums.write_text(sums.read_text() + "edited\n")
    assert _status(built, capsys)["checksums"]["why"] == ["outputs changed or missing on disk"]
    assert _states(built)["checksums"] == "ran"  # and release puts it right
    merged_record = built.manifest()["steps"]["merge"]
    merged_record["outputs"] = dict(merged_record["outputs"], extra={"sha256": "0" * 64, "size": 1})
    manifest = built.manifest()
    manifest["steps"]["merge"] = merged_record
    built.write_manifest(manifest)
    why = _status(built, capsys)["checksums"]["why"]
    assert why == ["upstream: merge outputs changed"], why


def test_the_registration_is_the_only_table() -> None:
    """Nothing in the pipeline keeps its own copy of the step names: the table is read when
    asked, so a step registered after import is known everywhere."""
    from medrelease.pipeline import run, steps

    assert not [
        name
        for name, value in vars(run).items()
        if isinstance(value, tuple) and value and all(isinstance(v, steps.StepDef) for v in value)
    ]
    assert steps.step_names() == tuple(s.name for s in steps.STEPS)
