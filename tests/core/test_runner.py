"""core/runner.py: what every step does around its own work (lock, sweep, rerun rule, record)."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from medrelease.core.atomic import TMP_PREFIX
from medrelease.core.errors import UsageError
from medrelease.core.hashing import file_record
from medrelease.core.inputs import Rerun, StepInputs
from medrelease.core.manifest import StepId, StepRecord
from medrelease.core.runner import step_run

TOY = StepId("toy", StepRecord)
LOADED = SimpleNamespace(recipe=SimpleNamespace(release=SimpleNamespace(name="rel")))


def toy(value: dict[str, Any], rerun: Rerun = Rerun.ALWAYS) -> StepInputs[StepRecord]:
    """A step whose one component is `value["x"]` and whose output folder is out/."""
    return StepInputs(
        TOY,
        (),
        lambda loaded, paths, manifest, cache: {"x": value["x"]},
        rerun,
        output=lambda p: p.root / "out",
    )


def work(inputs: StepInputs[StepRecord], workdir: Path, **kw: Any) -> bool:
    """One run of the toy step: writes out/file and records it. True when it did the work."""
    with step_run(inputs, LOADED, workdir, quiet=False, **kw) as run:
        if run.skipped:
            return False
        out = run.paths.root / "out"
        out.mkdir(exist_ok=True)
        (out / "file").write_text("made")
        record: StepRecord = {
            "status": "done",
            "outputs": {"out/file": file_record(out / "file")},
        }
        run.timer.lap("make")
        run.record(record)
        return True


def manifest_of(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "rel" / "manifest.json").read_text())


def test_record_adds_what_every_record_carries(tmp_path: Path):
    assert work(toy({"x": 1}), tmp_path)
    rec = manifest_of(tmp_path)["steps"]["toy"]
    assert rec["status"] == "done" and rec["outputs"]["out/file"]["size"] == 4
    assert rec["components"]["x"] == 1 and "tools" in rec["components"]
    assert len(rec["inputs_hash"]) == 64
    assert "medrelease" in rec["tools"]  # every record names the version that made it
    assert set(rec["timings"]) >= {"started_at", "finished_at", "duration_s", "phases_s"}
    assert "make" in rec["timings"]["phases_s"]


def test_the_components_a_run_was_decided_from_are_the_ones_recorded(tmp_path: Path):
    value = {"x": 1}
    with step_run(toy(value), LOADED, tmp_path, quiet=False) as run:
        decided = run.components()
        value["x"] = 2  # changes while the step works: the record says what it ran with
        run.record({"status": "done"}, decided, header={"release": {"name": "rel"}, "recipe": {}})
    data = manifest_of(tmp_path)
    assert data["steps"]["toy"]["components"]["x"] == 1
    assert data["release"] == {"name": "rel"}  # the header, in the same write


def test_the_release_is_locked_and_stale_temporaries_swept(tmp_path: Path):
    root = tmp_path / "rel"
    (root / "out").mkdir(parents=True)
    left = [root / f"{TMP_PREFIX}merged-x", root / "out" / f"{TMP_PREFIX}gguf-y"]
    for p in left:
        p.mkdir()
    with step_run(toy({"x": 1}), LOADED, tmp_path, sweep=[lambda p: p.root / "out"], quiet=False):
        assert not any(p.exists() for p in left)
        # another open of the lock file cannot take it while the step runs (another process)
        with open(root / ".lock") as fh, pytest.raises(BlockingIOError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    # released afterwards: the lock file is removed with it, and the lock can be taken again
    assert not (root / ".lock").exists()
    with open(root / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_step_that_skips_when_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    value = {"x": 1}
    inputs = toy(value, Rerun.SKIP)
    assert work(inputs, tmp_path)  # never ran
    assert not work(inputs, tmp_path)  # current: skipped
    with step_run(inputs, LOADED, tmp_path, quiet=False) as run:
        assert run.skipped is not None and run.skipped.skipped
        assert run.skipped.step == "toy"
        assert run.skipped.record == manifest_of(tmp_path)["steps"]["toy"]
    assert "toy: inputs unchanged since the recorded run; nothing to do" in capsys.readouterr().err
    assert work(inputs, tmp_path, force=True)  # --force
    value["x"] = 2
    assert work(inputs, tmp_path)  # stale: a changed input
    (tmp_path / "rel" / "out" / "file").write_text("edit")
    assert work(inputs, tmp_path)  # stale: its output changed on disk
    assert not work(inputs, tmp_path)


def test_a_step_that_refuses_to_overwrite(tmp_path: Path):
    value = {"x": 1}
    inputs = toy(value, Rerun.REFUSE)
    assert work(inputs, tmp_path)  # no output folder yet
    before = manifest_of(tmp_path)["steps"]["toy"]["timings"]
    with pytest.raises(UsageError) as err:
        work(inputs, tmp_path)
    assert err.value.exit_code == 2
    assert str(err.value) == f"output folder {tmp_path / 'rel' / 'out'} already exists"
    assert "--force" in (err.value.hint or "")
    assert manifest_of(tmp_path)["steps"]["toy"]["timings"] == before  # nothing was redone
    assert work(inputs, tmp_path, force=True)


def test_release_asks_every_step_to_skip_when_current(tmp_path: Path):
    """`release` runs a step it judged stale under Rerun.SKIP: a step that refuses to overwrite
    on its own replaces its stale outputs there, and is skipped when current."""
    value = {"x": 1}
    inputs = toy(value, Rerun.REFUSE)
    assert work(inputs, tmp_path)
    assert not work(inputs, tmp_path, rerun=Rerun.SKIP)  # current
    value["x"] = 2
    assert work(inputs, tmp_path, rerun=Rerun.SKIP)  # stale: replaced, no refusal
    assert manifest_of(tmp_path)["steps"]["toy"]["components"]["x"] == 2


def test_a_step_that_always_runs(tmp_path: Path):
    inputs = toy({"x": 1}, Rerun.ALWAYS)
    assert work(inputs, tmp_path)
    assert work(inputs, tmp_path)  # current, and runs all the same
