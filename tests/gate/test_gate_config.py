"""The `gates:` schema: shorthand, presets, rule shapes, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gate.gatehelpers import write_gate_recipe
from medrelease.core.errors import RecipeError
from medrelease.gate.config import GatesConfig, GateTask
from medrelease.pipeline.recipes import load_recipe

FAKE = {"base": Path("/nonexistent/base"), "sft": Path("/x/sft"), "dpo": Path("/x/dpo")}


def test_shorthand_and_labels() -> None:
    g = GatesConfig.model_validate(
        {
            "baselines": ["base"],
            "tasks": ["ifeval", "tasks/demo_mcq.yaml", {"preset": "mmlu_medical", "limit": 5}],
            "rules": [{"metric": "mmlu_medical/anatomy/acc", "vs": "base", "max_drop": 0.02}],
        }
    )
    assert [t.label for t in g.tasks] == ["ifeval", "demo_mcq", "mmlu_medical"]
    assert g.tasks[1].task_yaml == "tasks/demo_mcq.yaml"
    assert g.tasks[2].limit == 5
    assert g.rules[0].kind == "max_drop"
    assert g.backend == "hf" and g.model_args == {}


def test_unknown_preset_suggests() -> None:
    with pytest.raises(ValidationError, match="did you mean 'mmlu_medical'"):
        GateTask.model_validate({"preset": "mmlu_medicl"})


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"metric": "t/acc"}, "needs min, max"),
        ({"metric": "t/acc", "min": 0.1, "vs": "base"}, "either a floor"),
        ({"metric": "t/acc", "max_drop": 0.1}, "need `vs"),
        ({"metric": "t/acc", "vs": "base"}, "vs with max_drop or min_gain"),
        ({"metric": "t/acc", "vs": "base", "max_drop": 0.1, "min_gain": 0.1}, "one of max_drop"),
        ({"metric": "t/acc", "min": 0.1, "significant": True}, "comparisons"),
        ({"metric": "acc", "min": 0.1}, "<task>/<metric>"),
        ({"metric": "nope/acc", "min": 0.1}, "no task named 'nope'"),
        ({"metric": "t/acc", "vs": "grpo", "max_drop": 0.1}, "not in gates.baselines"),
    ],
)
def test_bad_rules(rule: dict, message: str) -> None:
    data = {"baselines": ["base"], "tasks": [{"name": "t", "preset": "medqa"}], "rules": [rule]}
    with pytest.raises(ValidationError, match=message):
        GatesConfig.model_validate(data)


def test_recipe_error_is_located(tmp_path: Path) -> None:
    gates = {"baselines": ["base"], "tasks": ["ifeval"], "rulez": []}
    path = write_gate_recipe(tmp_path, FAKE, gates)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, check_merge=False)
    assert "rulez" in str(err.value) and str(path) in str(err.value)
