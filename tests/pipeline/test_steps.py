"""The step table (pipeline/steps.py): each step's name and differences come from its one
declaration, and `release` acts on those fields rather than on step names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medrelease.core.console import Reporter
from medrelease.core.errors import RecipeError, UsageError
from medrelease.core.inputs import Rerun
from medrelease.pipeline import steps as steps_module
from medrelease.pipeline.run import run_release
from medrelease.pipeline.steps import (
    STEPS,
    ExecutorOptions,
    GateOptions,
    NoOptions,
    PublishOptions,
    QuantizeOptions,
    ReleaseOptions,
    step_names,
)
from medrelease.records.manifest import STEP_IDS, STEP_RECORDS


def test_names_and_record_types_come_from_the_step_ids():
    assert step_names() == ("merge", "gate", "quantize", "card", "publish")
    assert {s.name: s.record for s in STEPS} == STEP_RECORDS
    assert [s.inputs.id for s in STEPS] == list(STEP_IDS)


def test_the_differences_are_declared_fields():
    by = {s.name: s for s in STEPS}
    assert {n for n, s in by.items() if s.outputs_on_hub} == {"publish"}
    assert {n for n, s in by.items() if s.needs_gates} == {"card", "publish"}
    assert {n for n, s in by.items() if s.preflight is not None} == {"quantize"}
    assert {n: s.inputs.rerun for n, s in by.items()} == {
        "merge": Rerun.REFUSE,
        "gate": Rerun.ALWAYS,
        "quantize": Rerun.SKIP,
        "card": Rerun.ALWAYS,
        "publish": Rerun.ALWAYS,
    }


def test_each_step_gets_its_own_typed_options():
    ray = ExecutorOptions("ray", "10.0.0.1:6379")
    options = ReleaseOptions(
        executor=ray,
        publish=PublishOptions(target="dir:///tmp/x", dry_run=True),
        threads=4,
        allow_failed_gates=True,
    )
    got = {s.name: s.options(options) for s in STEPS}
    assert got["merge"] == NoOptions() and got["card"] == NoOptions()
    assert got["gate"] == GateOptions(ray, allow_failed_gates=True)
    assert got["quantize"] == QuantizeOptions(ray, threads=4)
    assert got["publish"] == PublishOptions(
        target="dir:///tmp/x", dry_run=True, allow_failed_gates=True
    )
    # a dry run writes nothing: release runs it every time and does not log it as done
    assert [s.name for s in STEPS if s.writes_nothing(got[s.name])] == ["publish"]
    assert not any(s.writes_nothing(s.options(ReleaseOptions())) for s in STEPS)


def test_release_hands_merge_the_release_rule_not_force(monkeypatch: pytest.MonkeyPatch):
    """`release` no longer forces a standalone merge's refusal away: it asks the step to act
    as in a release (skip when current, replace when stale) and forces only on --from/--only."""
    import medrelease.merge.config_check as config_check
    import medrelease.merge.step as merge_step

    seen: dict[str, Any] = {}
    monkeypatch.setattr(config_check, "check_merge_block", lambda loaded: None)
    monkeypatch.setattr(merge_step, "merge_release", lambda loaded, **kw: seen.update(kw))
    merge = STEPS[0]
    merge.run(object(), Path("build"), Reporter(quiet=True), NoOptions(), False)  # type: ignore[arg-type]
    assert seen["force"] is False and seen["rerun"] is steps_module.IN_RELEASE is Rerun.SKIP


class _Recipe:
    """Just enough of a LoadedRecipe for run_release's checks before any step runs."""

    def __init__(self, gates: Any = None, quantize: Any = None):
        from types import SimpleNamespace

        self.path = Path("recipe.yaml")
        self.recipe = SimpleNamespace(
            release=SimpleNamespace(name="r"), gates=gates, quantize=quantize
        )


def test_steps_needing_gates_are_refused_before_anything_runs(tmp_path: Path):
    with pytest.raises(RecipeError, match="no gates: section"):
        run_release(_Recipe(), workdir=tmp_path, only=["card"])  # type: ignore[arg-type]
    assert not (tmp_path / "r").exists()  # refused before the lock (nothing written)


def test_unknown_steps_are_a_usage_error(tmp_path: Path):
    with pytest.raises(UsageError, match="unknown step 'sweeep'") as err:
        run_release(_Recipe(), workdir=tmp_path, from_step="sweeep")  # type: ignore[arg-type]
    assert "merge, gate, quantize, card, publish" in (err.value.hint or "")
