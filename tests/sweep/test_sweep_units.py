"""Pieces of the sweep without a model: the adopt text edit, the grid, the Pareto front."""

from __future__ import annotations

import pytest
import yaml

from medrelease.core.errors import RecipeError
from medrelease.sweep.adopt import adopted_text
from medrelease.sweep.config import SweepConfig
from medrelease.sweep.report import pareto_front
from medrelease.sweep.space import apply_params, grid

RECIPE = """\
# top comment
release: {name: x}   # inline
merge:
  merge_method: ties      # method comment
  base_model: base
  models:
    - model: sft
      parameters: {weight: 0.5, density: 0.9}   # flow mapping
    - model: dpo
      parameters:
        weight: 0.5       # block mapping
        density: [0.1, 0.5, 0.9]   # gradient, flow list
  parameters:
    epsilon:
      - 0.1   # block list item
      - 0.2
  dtype: bfloat16
# trailing comment
"""

PARAMS = {
    "merge_method": "dare_ties",
    "models.0.parameters.weight": 0.123456789012345,
    "models.0.parameters.density": 1.0,
    "models.1.parameters.weight": 0.7,
    "models.1.parameters.density.1": 0.30000000000000004,
    "parameters.epsilon.0": 0.05,
}


def test_adopt_replaces_only_the_values_and_keeps_every_comment() -> None:
    out = adopted_text(RECIPE, PARAMS)
    data = yaml.safe_load(RECIPE)
    assert yaml.safe_load(out) == {**data, "merge": apply_params(data["merge"], PARAMS)}
    for comment in ("# top comment", "# inline", "# method comment", "# flow mapping",
                    "# block mapping", "# gradient, flow list", "# block list item",
                    "# trailing comment"):  # fmt: skip
        assert comment in out
    assert "merge_method: dare_ties      # method comment" in out
    assert "parameters: {weight: 0.123456789012345, density: 1.0}   # flow mapping" in out
    assert "density: [0.1, 0.30000000000000004, 0.9]" in out  # exact float, round-trips
    # nothing else moved: the same number of lines, the unchanged ones identical
    before, after = RECIPE.splitlines(), out.splitlines()
    assert len(before) == len(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed == [3, 7, 10, 11, 14]


def test_adopt_refuses_a_path_the_text_lacks() -> None:
    with pytest.raises(RecipeError, match=r"merge\.models\.3\.parameters\.weight"):
        adopted_text(RECIPE, {"models.3.parameters.weight": 0.2})


def _sweep(**extra: object) -> SweepConfig:
    return SweepConfig.model_validate(
        {
            "objectives": [{"metric": "t/acc"}],
            "search": {"t": {"start": 4, "count": 4}},
            **extra,
        }
    )


def test_grid_values_of_ranges_and_choices() -> None:
    sweep = _sweep(
        space=[
            {"path": "a", "low": 0.1, "high": 0.5, "step": 0.1},
            {"path": "b", "low": 1, "high": 3, "int": True},
            {"path": "merge_method", "choices": ["ties", "linear"]},
        ],
        sampler="grid",
    )
    assert grid(sweep) == {
        "a": [0.1, 0.2, 0.3, 0.4, 0.5],
        "b": [1, 2, 3],
        "merge_method": ["ties", "linear"],
    }


def test_grid_needs_steps() -> None:
    with pytest.raises(ValueError, match="grid sampler needs `step`"):
        _sweep(space=[{"path": "a", "low": 0.1, "high": 0.5}], sampler="grid")


def _t(n: int, values: list[float], feasible: bool = True, state: str = "complete") -> dict:
    return {"number": n, "state": state, "feasible": feasible, "values": values}


def test_pareto_front_keeps_feasible_non_dominated_trials() -> None:
    trials = [
        _t(0, [0.5, 0.5]),
        _t(1, [0.6, 0.4]),
        _t(2, [0.4, 0.4]),  # dominated by 0
        _t(3, [0.9, 0.9], feasible=False),  # would dominate all, but breaks a rule
        _t(4, [0.95, 0.95], state="pruned"),
        {**_t(5, [0.6, 0.4]), "duplicate_of": 1},
    ]
    assert pareto_front(trials, ["maximize", "maximize"]) == [1, 0]  # type: ignore[arg-type]
    assert pareto_front(trials, ["maximize", "minimize"]) == [1]  # type: ignore[arg-type]


def _merge_record(sha: str) -> dict:
    return {"outputs": {"merged/model.safetensors": {"sha256": sha, "size": 1}}}


def test_card_section_credits_only_the_trial_whose_weights_were_released() -> None:
    from medrelease.card.sweep_section import sweep_section
    from medrelease.core.hashing import weights_digest

    released = weights_digest(_merge_record("aa")["outputs"])
    trial = {
        "number": 3,
        "state": "complete",
        "params": {"w": 0.4},
        "values": [0.75],
        "weights_hash": released,
        "metrics": {"t/acc": {"value": 0.75, "stderr": 0.1}},
    }
    other = {**trial, "number": 4, "weights_hash": "sha256:other", "values": [0.8]}
    sweep = {
        "sampler": "tpe", "seed": 0, "objectives": [{"metric": "t/acc", "direction": "maximize"}],
        "search": {"t": {"start": 4, "count": 4, "subtasks": 1, "gate_items": 4}},
        "trials": [trial, other], "front": [4, 3], "items": {"saved": 2},
    }  # fmt: skip
    report = {"candidate": "merged", "metrics": [{"metric": "t/acc", "values": {"merged": 0.5}}]}
    section = sweep_section(sweep, _merge_record("aa"), report)  # type: ignore[arg-type]
    assert section is not None and section["chosen"]["number"] == 3
    assert section["rows"] == [{"metric": "t/acc", "search": 0.75, "held_out": 0.5}]
    elsewhere = sweep_section(sweep, _merge_record("bb"), report)  # type: ignore[arg-type]
    assert elsewhere is not None and elsewhere["chosen"] is None
    assert elsewhere["rows"][0]["search"] is None  # no search number for a merge not searched
    assert sweep_section(None, _merge_record("aa"), report) is None  # type: ignore[arg-type]


def test_a_pruned_trials_values_are_its_partial_metrics_not_the_last_item() -> None:
    import optuna

    from medrelease.sweep.report import RECORD, trial_entries

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    for step, score in enumerate([0.0, 0.0, 1.0, 1.0]):  # per-item scores, as the pruner sees
        trial.report(score, step)
    trial.set_user_attr(RECORD, {"state": "pruned", "values": [0.5], "metrics": {}})
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert study.trials[0].values == [1.0]  # Optuna: the last reported value, one item's
    (entry,) = trial_entries(study)
    assert entry["state"] == "pruned" and entry["values"] == [0.5]
