"""Bad `sweep:` sections exit 2 with file and line, before anything is merged or evaluated."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from helpers import run_cli
from sweep.sweephelpers import write_sweep_recipe

FAKE = {"base": Path("/nonexistent/base"), "sft": Path("/nonexistent/sft"),
        "dpo": Path("/nonexistent/dpo")}  # fmt: skip
GOOD: dict[str, Any] = {
    "space": [{"path": "models.0.parameters.weight", "low": 0.1, "high": 0.9}],
    "objectives": [{"metric": "demo_mcq/acc"}],
    "search": {"demo_mcq": {"start": 4, "count": 8}},
}


def _with(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(GOOD)
    out.update(changes)
    return out


CASES = [
    (
        _with(space=[{"path": "models.0.parameters.wieght", "low": 0.1, "high": 0.9}]),
        "not in the merge block",
        "path",
    ),
    (
        _with(space=[{"path": "models.5.parameters.weight", "low": 0.1, "high": 0.9}]),
        "not in the merge block",
        "path",
    ),
    (
        _with(space=[{"path": "models.0.parameters.weight", "low": -0.5, "high": 0.9}]),
        "allow_negative",
        "low",
    ),
    (
        _with(space=[{"path": "merge_method", "choices": ["linear", "tiez"]}]),
        "not a method",
        "choices",
    ),
    (
        _with(space=[{"path": "merge_method", "choices": ["linear", "ties"]}]),
        "needs `base_model`",
        "choices",
    ),
    (_with(objectives=[{"metric": "mmlu/acc"}]), "no gate task named 'mmlu'", "metric"),
    (_with(search={"demo_mcq": {"start": 2, "count": 8}}), "overlap the gate's items", "start"),
    (_with(search={"demo_mcq_x": {"start": 4, "count": 8}}), "not a gate task", "demo_mcq_x"),
]


@pytest.mark.parametrize(("sweep", "message", "key"), CASES)
def test_bad_sweep_exits_2_with_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, sweep: dict[str, Any], message: str, key: str
) -> None:
    recipe = write_sweep_recipe(tmp_path, FAKE, sweep)
    assert run_cli("sweep", recipe, "--workdir", tmp_path / "build") == 2
    err = capsys.readouterr().err
    assert message in err, err
    lines = recipe.read_text().splitlines()
    where = f"{recipe}:"
    assert where in err
    line = int(err.split(where, 1)[1].split(":", 1)[0])
    assert key in lines[line - 1] or key == "choices", lines[line - 1]
    assert not (tmp_path / "build" / "tiny-sweep" / "sweep" / "scratch").exists()


def test_gate_without_limit_refuses_any_search_items(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recipe = write_sweep_recipe(
        tmp_path,
        FAKE,
        GOOD,
        tasks=[{"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"}],
    )
    assert run_cli("sweep", recipe, "--workdir", tmp_path / "build") == 2
    err = capsys.readouterr().err
    assert "every item(s) of 'demo_mcq'" in err and "limit" in err


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"path": "models.0.parameters.density", "low": 0.0, "high": 0.5}, "domain"),
        ({"path": "x", "low": 0.9, "high": 0.1}, "must be below"),
        ({"path": "x", "low": 0.0, "high": 1.0, "log": True}, "low > 0"),
        ({"path": "x", "low": 0.1}, "both low and high"),
        ({"path": "x", "low": 0.1, "high": 0.2, "choices": [1]}, "either low + high"),
    ],
)
def test_bad_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture, space: dict[str, Any], message: str
) -> None:
    recipe = write_sweep_recipe(tmp_path, FAKE, _with(space=[space]))
    if space["path"].endswith("density"):  # give the value a starting point in the merge block
        text = recipe.read_text().replace("weight: 0.5}", "weight: 0.5, density: 0.5}")
        recipe.write_text(text)
    assert run_cli("sweep", recipe, "--workdir", tmp_path / "build") == 2
    assert message in capsys.readouterr().err


def test_multi_objective_pruning_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep = _with(
        objectives=[{"metric": "demo_mcq/acc"}, {"metric": "demo_mcq/acc_norm"}],
        pruning={"increment": 2},
    )
    recipe = write_sweep_recipe(tmp_path, FAKE, sweep)
    assert run_cli("sweep", recipe, "--workdir", tmp_path / "build") == 2
    assert "one objective" in capsys.readouterr().err


def test_validate_checks_the_sweep_section(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = _with(search={"demo_mcq": {"start": 0, "count": 8}})
    recipe = write_sweep_recipe(tmp_path, FAKE, bad)
    assert run_cli("validate", recipe) == 2
    assert "overlap the gate's items" in capsys.readouterr().err
