"""No parameter set is evaluated twice (a repeat copies the earlier result), and the grid
sampler stops when its grid is done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli
from sweep.sweephelpers import write_sweep_recipe

pytestmark = pytest.mark.slow


def _sweep(sampler: str, trials: int) -> dict:
    return {
        "space": [{"path": "models.0.parameters.weight", "choices": [0.3, 0.7]}],
        "objectives": [{"metric": "demo_mcq/acc"}],
        "search": {"demo_mcq": {"start": 4, "count": 4}},
        "trials": trials,
        "sampler": sampler,
        "seed": 0,
    }


def test_a_repeated_parameter_set_is_copied_not_evaluated(
    tmp_path: Path, llama: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    recipe = write_sweep_recipe(tmp_path / "random", llama, _sweep("random", 4))
    assert run_cli("sweep", recipe, "--workdir", tmp_path / "b1", "--json") == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    assert len(trials) == 4  # two values, four trials: at least two repeats
    first: dict[float, dict] = {}
    for t in trials:
        w = t["params"]["models.0.parameters.weight"]
        if w in first:
            assert t["duplicate_of"] == first[w]["number"]
            assert t["values"] == first[w]["values"] and t["duration_s"] == 0.0
            assert t["weights_hash"] == first[w]["weights_hash"]
        else:
            assert "duplicate_of" not in t
            first[w] = t
    assert len(first) == 2


def test_grid_sampler_stops_when_the_grid_is_done(
    tmp_path: Path, llama: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    recipe = write_sweep_recipe(tmp_path / "grid", llama, _sweep("grid", 5))
    assert run_cli("sweep", recipe, "--workdir", tmp_path / "b2", "--json") == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    assert sorted(t["params"]["models.0.parameters.weight"] for t in trials) == [0.3, 0.7]
    assert all(t["state"] == "complete" for t in trials)
