"""core/inputs.py: what a step depends on, and whether its recorded run is still current."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from medrelease.core.errors import InputError
from medrelease.core.hashing import HashCache, digest_of, file_record
from medrelease.core.inputs import (
    Rerun,
    StepInputs,
    judge,
    outputs_digest,
    outputs_intact,
    record_inputs,
    referenced_files,
    skips,
    why_stale,
)
from medrelease.core.manifest import Manifest, StepId, StepRecord
from medrelease.core.paths import ReleasePaths

TOY = StepId("toy", StepRecord)


def toy_inputs(
    value: dict[str, Any], rerun: Rerun = Rerun.ALWAYS, tools: tuple[str, ...] = ()
) -> StepInputs[StepRecord]:
    """A step whose one component is `value["x"]`, read when computed (so tests can change it)."""
    return StepInputs(TOY, tools, lambda loaded, paths, manifest, cache: {"x": value["x"]}, rerun)


@pytest.fixture
def paths(tmp_path: Path) -> ReleasePaths:
    p = ReleasePaths(tmp_path, "rel")
    p.root.mkdir(parents=True)
    return p


def recorded(paths: ReleasePaths, components: dict[str, Any], **files: bytes) -> StepRecord:
    """A done record of `components` with `files` written under the release folder."""
    outputs = {}
    for name, data in files.items():
        (paths.root / name).write_bytes(data)
        outputs[name] = file_record(paths.root / name)
    record: StepRecord = {"status": "done", "outputs": outputs}
    record_inputs(record, components)
    return record


def test_record_inputs_keeps_the_components_and_their_digest():
    record: StepRecord = {"status": "done"}
    record_inputs(record, {"recipe": "abc", "upstream": None})
    assert record["components"] == {"recipe": "abc", "upstream": None}
    assert record["inputs_hash"] == digest_of({"recipe": "abc", "upstream": None})
    assert record["inputs_hash"] != digest_of({"recipe": "abd", "upstream": None})


def test_why_stale_names_each_reason(paths: ReleasePaths):
    cache = HashCache(None)
    now = {"recipe": "r1", "files": "f1", "tools": "t1"}
    assert why_stale(None, now, paths, cache) == ["never run"]
    assert why_stale({"status": "done"}, now, paths, cache) == ["never run"]  # no components
    failed = {**recorded(paths, now), "status": "failed"}
    assert why_stale(failed, now, paths, cache) == ["last run failed"]
    assert why_stale({"components": now}, now, paths, cache) == ["last run did not finish"]

    rec = recorded(paths, now, **{"out.bin": b"weights"})
    assert why_stale(rec, now, paths, cache) == []
    # every changed component, by name and sorted; one that appeared or vanished counts too
    changed = {"recipe": "r2", "tools": "t2", "new": "n"}
    # one reason per changed component, naming it and what changed (core/why.py)
    assert why_stale(rec, changed, paths, cache) == [
        "files: f1 → (none)",
        "new: (none) → n",
        "recipe: r1 → r2",
        "tools: t1 → t2",
    ]


def test_outputs_on_disk_are_checked_by_size_and_content(paths: ReleasePaths):
    cache = HashCache(None)
    now = {"recipe": "r"}
    rec = recorded(paths, now, **{"a.bin": b"abcd", "b.bin": b"xyz"})
    assert outputs_intact(rec, paths, cache)

    (paths.root / "a.bin").write_bytes(b"abce")  # same size, other bytes
    assert not outputs_intact(rec, paths, cache)
    assert why_stale(rec, now, paths, cache) == ["outputs changed or missing on disk"]
    # a step whose outputs are not on disk (publish: on the Hub) is not judged by them
    assert why_stale(rec, now, paths, cache, check_outputs=False) == []

    (paths.root / "a.bin").write_bytes(b"abcd")
    (paths.root / "b.bin").unlink()
    assert not outputs_intact(rec, paths, cache)
    (paths.root / "b.bin").write_bytes(b"xyzw")  # other size
    assert not outputs_intact(rec, paths, cache)
    assert not outputs_intact(None, paths, cache)


def test_compute_adds_the_tool_versions(paths: ReleasePaths):
    manifest = Manifest.load(paths.root)
    cache = HashCache(None)
    value = {"x": 1}
    plain = toy_inputs(value).compute(None, paths, manifest, cache)
    assert plain["x"] == 1 and set(plain) == {"tools", "x"}
    # a distribution that is not installed is recorded as such (None), so installing it stales
    with_tool = toy_inputs(value, tools=("no-such-dist-for-medrelease",))
    assert with_tool.tool_versions()["no-such-dist-for-medrelease"] is None
    assert with_tool.compute(None, paths, manifest, cache)["tools"] != plain["tools"]


def test_judge_reads_the_step_record_and_says_its_state(paths: ReleasePaths):
    cache = HashCache(None)
    value = {"x": 1}
    inputs = toy_inputs(value)
    assert judge(inputs, None, paths, Manifest.load(paths.root), cache).state == "pending"

    manifest = Manifest.load(paths.root)
    components = inputs.compute(None, paths, manifest, cache)
    manifest.record_step("toy", recorded(paths, components, **{"o.txt": b"o"}))
    verdict = judge(inputs, None, paths, Manifest.load(paths.root), cache)
    assert (verdict.state, verdict.why) == ("current", [])
    assert verdict.record is not None and verdict.record["components"] == components

    value["x"] = 2
    verdict = judge(inputs, None, paths, Manifest.load(paths.root), cache)
    assert (verdict.state, verdict.why) == ("stale", ["x: 1 → 2"])
    assert verdict.components["x"] == 2


@pytest.mark.parametrize(
    ("rerun", "hint"), [(Rerun.SKIP, "RECIPE --force`"), (Rerun.ALWAYS, "RECIPE`")]
)
def test_a_malformed_record_is_one_error_with_the_command_that_records_it_again(
    paths: ReleasePaths, rerun: Rerun, hint: str
):
    manifest = Manifest.load(paths.root)
    manifest.record_step("toy", {"status": 3, "outputs": "not a mapping"})
    with pytest.raises(InputError) as err:
        toy_inputs({"x": 1}, rerun).previous(Manifest.load(paths.root))
    assert "steps.toy" in str(err.value)
    assert f"medrelease toy {hint}" in (err.value.hint or "")


def test_the_skip_rule():
    # only a step that skips when current, only when current, never when forced
    assert skips([], force=False, rerun=Rerun.SKIP)
    assert not skips([], force=True, rerun=Rerun.SKIP)
    assert not skips(["recipe"], force=False, rerun=Rerun.SKIP)
    assert not skips(["never run"], force=False, rerun=Rerun.SKIP)
    assert not skips([], force=False, rerun=Rerun.REFUSE)
    assert not skips([], force=False, rerun=Rerun.ALWAYS)


def test_outputs_digest_follows_an_upstream_step(paths: ReleasePaths):
    manifest = Manifest.load(paths.root)
    assert outputs_digest(manifest, "toy") is None  # never ran
    manifest.record_step("toy", recorded(paths, {}, **{"a": b"1"}))
    first = outputs_digest(manifest, "toy")
    manifest.record_step("toy", recorded(paths, {}, **{"a": b"2"}))
    assert first is not None and outputs_digest(manifest, "toy") not in (None, first)


def test_referenced_files_finds_what_a_section_names(tmp_path: Path):
    base = tmp_path / "recipe"
    (base / "tasks" / "data").mkdir(parents=True)
    (base / "tasks" / "mcq.yaml").write_text("task: mcq\n")
    (base / "tasks" / "mcq.jsonl").write_text("{}\n")
    (base / "tasks" / "data" / "x.txt").write_text("x")
    (base / "card.md").write_text("# card")
    section = {
        "template": "card.md",
        "tasks": [{"task_yaml": "tasks/mcq.yaml"}, {"data_dir": "tasks/data"}],
        "not_a_file": "Q4_K_M",
        "text": "a\nmultiline string",
        "number": 3,
    }
    cache = HashCache(None)
    found = referenced_files(section, base, cache)
    # a task YAML brings its folder's files (its data sits beside it)
    assert set(found) == {
        "card.md",
        "tasks/mcq.yaml",
        "tasks/mcq.yaml::mcq.jsonl",
        "tasks/data",
    }
    before = dict(found)
    (base / "tasks" / "data" / "x.txt").write_text("y")
    after = referenced_files(section, base, cache)
    assert after["tasks/data"] != before["tasks/data"]
    assert after["card.md"] == before["card.md"]


def test_section_is_json_or_none():
    class Section:
        def model_dump(self, mode: str) -> dict[str, Any]:
            assert mode == "json"
            return {"a": 1}

    loaded = SimpleNamespace(recipe=SimpleNamespace(card=Section(), gates=None))
    from medrelease.core.inputs import section

    assert section(loaded, "card") == {"a": 1}
    assert section(loaded, "gates") is None
