"""A gate baseline can be another model: a `reference: true` stage (e.g. a peer release of a
different architecture) is evaluated next to the candidate but is never merged or a parent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gate.gatehelpers import write_demo_task, write_gate_recipe
from helpers import run_cli
from medrelease.gate import step
from medrelease.pipeline.recipes import load_recipe
from releases import built_release

GATES: dict[str, Any] = {
    "baselines": ["base", "peer"],
    "batch_size": 4,
    "device": "cpu",
    "tasks": [{"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"}],
    "rules": [
        {"metric": "demo_mcq/acc", "min": 0.0},
        {"metric": "demo_mcq/acc", "vs": "peer", "max_drop": 1.0},
    ],
}


def _recipe(root: Path, llama: dict[str, Path], peer: Any, **changes: Any) -> Path:
    path = write_gate_recipe(root, llama, GATES)
    data = yaml.safe_load(path.read_text())
    data["stages"]["peer"] = peer
    for key, value in changes.items():
        data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_reference_model_of_another_architecture_is_a_baseline(
    tmp_path: Path, llama: dict[str, Path], tiny_families: Any
) -> None:
    from medrelease.testing.tiny import derive_stage

    qwen3 = tiny_families("qwen3")["base"]
    write_demo_task(tmp_path / "tasks")
    recipe = _recipe(tmp_path, llama, {"path": str(qwen3), "reference": True})
    cand = derive_stage(llama["base"], tmp_path / "cand", seed=7, scale=0.5)
    workdir = built_release(tmp_path, "merge", recipe, merged=cand).workdir

    report = step.gate_release(load_recipe(recipe), workdir=workdir).report

    peer = report["models"]["peer"]
    assert peer["kind"] == "reference" and peer["source"] == str(qwen3)
    assert report["models"]["base"]["kind"] == "stage"
    acc = next(m for m in report["metrics"] if m["metric"] == "demo_mcq/acc")
    assert set(acc["values"]) == {"merged", "base", "peer"}
    assert 0.0 <= acc["values"]["peer"] <= 1.0
    rule = next(r for r in report["rules"] if r["vs"] == "peer")
    assert rule["baseline"] == acc["values"]["peer"]
    assert rule["delta"] == pytest.approx(acc["values"]["merged"] - acc["values"]["peer"])
    # a Qwen3 reference next to llama stages: nothing checked it for merge compatibility
    assert (workdir / "tiny-gate" / "gates" / "report.json").is_file()


@pytest.mark.parametrize(
    ("peer", "changes", "expected"),
    [
        # the merge may not read a reference model
        (
            {"path": "./peer", "reference": True},
            {"merge": {"merge_method": "linear", "dtype": "float32", "models": [
                {"model": "sft", "parameters": {"weight": 0.5}},
                {"model": "peer", "parameters": {"weight": 0.5}}]}},
            "is a reference model",
        ),
        # nothing may descend from one
        ({"path": "./peer", "reference": True}, {"stages_patch": {"sft": "peer"}}, "descends from"),
        # nor may the release take its tokenizer
        ({"path": "./peer", "reference": True}, {"output": {"tokenizer_from": "peer"}},
         "is a reference model"),
    ],
)  # fmt: skip
def test_reference_models_cannot_feed_the_release(
    tmp_path: Path,
    llama: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    peer: Any,
    changes: dict[str, Any],
    expected: str,
) -> None:
    (tmp_path / "peer").mkdir()
    write_demo_task(tmp_path / "tasks")  # the recipe's task file exists: one problem, this one
    patch = changes.pop("stages_patch", None)
    recipe = _recipe(tmp_path, llama, peer, **changes)
    if patch:
        data = yaml.safe_load(recipe.read_text())
        for stage, parent in patch.items():
            data["stages"][stage] = {"path": data["stages"][stage], "parent": parent}
        recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run_cli("validate", str(recipe)) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "build").exists()


def test_unknown_baseline_points_at_reference_models(
    tmp_path: Path, llama: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_demo_task(tmp_path / "tasks")
    recipe = _recipe(tmp_path, llama, str(llama["grpo"]))
    data = yaml.safe_load(recipe.read_text())
    data["gates"]["baselines"] = ["base", "medgemma"]
    data["gates"]["rules"] = [{"metric": "demo_mcq/acc", "min": 0.0}]
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    built_release(tmp_path, "merge", recipe, merged=llama["sft"])
    assert run_cli("gate", str(recipe), "--workdir", str(tmp_path / "build")) == 2
    err = capsys.readouterr().err
    assert "'medgemma' is not a stage" in err and "reference: true" in err
