"""Trials as Ray tasks on a two-node cluster (ray.cluster_utils): a seeded deterministic
sampler gives the same trials, parameters and values, as the local executor."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import two_node_ray_cluster
from medrelease.pipeline.recipes import load_recipe
from medrelease.sweep.study import run_sweep
from sweep.sweephelpers import write_sweep_recipe

# a two-node cluster plus two sweeps: the heavy tier (CI runs it), not make test
pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def _trials(report: dict) -> list[tuple]:
    return [
        (t["number"], t["state"], t["params"], t["values"], t["metrics"], t["weights_hash"])
        for t in report["trials"]
    ]


def test_ray_sweep_equals_local_sweep(tmp_path: Path, llama: dict[str, Path]) -> None:
    recipe = write_sweep_recipe(tmp_path, llama)  # random sampler, seed 3, 3 trials
    local = run_sweep(load_recipe(recipe), workdir=tmp_path / "local")
    with two_node_ray_cluster() as cluster:
        ray = run_sweep(
            load_recipe(recipe),
            workdir=tmp_path / "ray",
            executor="ray",
            ray_address=cluster.address,
        )
    assert ray.ran == local.ran == 3
    assert _trials(dict(ray.report)) == _trials(dict(local.report))
    assert ray.report["front"] == local.report["front"]
    # the trials ran in the sweep's scratch space and left nothing there
    assert not any((tmp_path / "ray" / "tiny-sweep" / "sweep" / "scratch").glob("*/*/merged"))
    assert list((tmp_path / "ray" / "tiny-sweep" / "sweep" / "scratch").glob("slot*"))
