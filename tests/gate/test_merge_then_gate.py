"""The real chain: `medrelease merge` on tiny stages, then `medrelease gate` on a local task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate.gatehelpers import write_demo_task, write_gate_recipe
from helpers import run_cli

pytestmark = pytest.mark.slow


def test_merge_then_gate_cli(
    tmp_path: Path, llama: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    write_demo_task(tmp_path / "tasks", relative=True)  # data_files relative to the YAML
    gates = {
        "baselines": ["base", "sft"],
        "device": "cpu",
        "tasks": [{"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"}],
        "rules": [
            {"metric": "demo_mcq/acc", "min": 0.0},
            {"metric": "demo_mcq/acc_norm", "vs": "sft", "max_drop": 1.0},
        ],
    }
    recipe = write_gate_recipe(tmp_path, llama, gates)
    workdir = tmp_path / "build"
    assert run_cli("merge", recipe, "--workdir", workdir, "--json") == 0
    capsys.readouterr()
    assert run_cli("gate", recipe, "--workdir", workdir, "--limit", "4", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    assert set(report["models"]) == {"merged", "base", "sft"}
    assert report["tasks"]["demo_mcq"]["limit"] == 4
    assert report["tasks"]["demo_mcq"]["n_samples"] == 4
    acc = next(m for m in report["metrics"] if m["metric"] == "demo_mcq/acc")
    assert set(acc["values"]) == {"merged", "base", "sft"}
    assert all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in acc["values"].values())
    manifest = json.loads((workdir / "tiny-gate" / "manifest.json").read_text())
    assert manifest["steps"]["merge"]["status"] == "done"
    assert manifest["steps"]["gate"]["passed"] is True
