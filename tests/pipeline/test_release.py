"""`medrelease release`: the whole chain on tiny models, then the cache.

A second release with nothing changed must run no merge, no evaluation, no quantization and
no upload; changing only the card template must re-render (and re-publish) only the card.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gate.gatehelpers import write_demo_task
from helpers import run_cli

TEMPLATE = """{% extends "builtin/model.md.j2" %}
{% block citation %}Cite this tiny release as: {{ release.name }} ({{ marker }}).{% endblock %}
"""


def recipe_for(root: Path, llama: dict[str, Path]) -> Path:
    write_demo_task(root / "tasks", relative=True)
    (root / "card.md.j2").write_text(TEMPLATE.replace("{{ marker }}", "first"))
    recipe = {
        "release": {
            "name": "tiny-pipeline",
            "version": "0.1.0",
            "repo": "medrelease-tests/tiny-pipeline",
            "license": "apache-2.0",
        },
        "stages": {
            "base": str(llama["base"]),
            "sft": {"path": str(llama["sft"]), "parent": "base"},
            "grpo": {"path": str(llama["grpo"]), "parent": "sft"},
        },
        "merge": {
            "merge_method": "linear",
            "models": [
                {"model": "sft", "parameters": {"weight": 0.5}},
                {"model": "grpo", "parameters": {"weight": 0.5}},
            ],
            "dtype": "float32",
        },
        "output": {"generation_config": {"do_sample": False, "repetition_penalty": 1.1}},
        "gates": {
            "device": "cpu",
            "batch_size": 4,
            "baselines": ["base"],
            "tasks": [{"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"}],
            "rules": [{"metric": "demo_mcq/acc", "min": 0.0}],
        },
        "quantize": {"gguf": {"types": ["Q8_0"]}},
        "card": {
            "template": "card.md.j2",
            "stage_licenses": {"base": "apache-2.0", "sft": "apache-2.0", "grpo": "apache-2.0"},
        },
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def forbid(monkeypatch, target: str, attr: str, what: str) -> None:
    import importlib

    module = importlib.import_module(target)

    def boom(*a, **k):
        raise AssertionError(f"{what} ran although nothing changed")

    monkeypatch.setattr(module, attr, boom)


@pytest.mark.slow
def test_release_then_cached_rerun_then_template_change(
    tmp_path, llama, hub_default, monkeypatch, capsys
):
    recipe = recipe_for(tmp_path, llama)
    workdir = tmp_path / "build"
    assert run_cli("release", recipe, "--workdir", workdir, "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert [s["state"] for s in first["steps"]] == ["ran"] * 5, first

    root = workdir / "tiny-pipeline"
    manifest = json.loads((root / "manifest.json").read_text())
    assert set(manifest["pipeline"]) == {"merge", "gate", "quantize", "card", "publish"}
    assert (root / "gates" / "report.json").is_file()
    assert (root / "quant" / "gguf" / "tiny-pipeline-Q8_0.gguf").is_file()
    assert (
        "Cite this tiny release as: tiny-pipeline (first)"
        in (root / "card" / "README.md").read_text()
    )
    commits_after_first = hub_default.state.events["commit"]
    uploads_after_first = sum(hub_default.state.uploads.values())
    assert commits_after_first >= 2  # main repo + GGUF repo

    # nothing changed: no merge, no evaluation, no quantization, no upload
    forbid(monkeypatch, "medrelease.merge.step", "run_mergekit", "mergekit")
    forbid(monkeypatch, "lm_eval", "simple_evaluate", "lm-eval")
    forbid(monkeypatch, "llama_cpp", "llama_model_quantize", "llama.cpp quantize")
    forbid(monkeypatch, "medrelease.card.step", "card_release", "card rendering")
    assert run_cli("release", recipe, "--workdir", workdir, "--json") == 0
    second = json.loads(capsys.readouterr().out)
    assert [s["state"] for s in second["steps"]] == ["skipped"] * 5, second
    assert hub_default.state.events["commit"] == commits_after_first
    assert sum(hub_default.state.uploads.values()) == uploads_after_first

    # only the card template changes: only card (and the publish of the card) run
    monkeypatch.undo()  # the hub fixtures keep their own settings (tests/conftest.py)
    (tmp_path / "card.md.j2").write_text(TEMPLATE.replace("{{ marker }}", "second"))
    forbid(monkeypatch, "medrelease.merge.step", "run_mergekit", "mergekit")
    forbid(monkeypatch, "lm_eval", "simple_evaluate", "lm-eval")
    forbid(monkeypatch, "llama_cpp", "llama_model_quantize", "llama.cpp quantize")
    assert run_cli("release", recipe, "--workdir", workdir, "--json") == 0
    third = json.loads(capsys.readouterr().out)
    states = {s["step"]: s["state"] for s in third["steps"]}
    assert states == {
        "merge": "skipped",
        "gate": "skipped",
        "quantize": "skipped",
        "card": "ran",
        "publish": "ran",
    }, third
    assert "(second)" in (root / "card" / "README.md").read_text()
    assert sum(hub_default.state.uploads.values()) == uploads_after_first  # weights not re-sent
    assert (
        hub_default.state.events["commit"] == commits_after_first + 1
    )  # only the main card changed

    # status agrees: everything current
    assert run_cli("status", recipe, "--workdir", workdir, "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert {s["step"]: s["state"] for s in status["steps"]} == dict.fromkeys(
        ("merge", "gate", "quantize", "card", "publish"), "current"
    )


@pytest.mark.slow
def test_status_explains_what_is_stale(tmp_path, llama, capsys):
    recipe = recipe_for(tmp_path, llama)
    workdir = tmp_path / "build"
    assert run_cli("release", recipe, "--workdir", workdir, "--only", "merge") == 0
    capsys.readouterr()
    assert run_cli("status", recipe, "--workdir", workdir, "--json") == 0
    status = {s["step"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    assert status["merge"]["state"] == "current"
    assert status["merge"]["outputs"]["merged/model.safetensors"]["sha256"]
    assert status["gate"]["state"] == "pending"

    data = yaml.safe_load(recipe.read_text())
    data["seed"] = 99
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run_cli("status", recipe, "--workdir", workdir, "--json") == 0
    status = {s["step"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    # the reason names the key, with its recorded and its new value
    assert status["merge"]["state"] == "stale"
    assert status["merge"]["why"] == ["recipe: seed 20240611 → 99"]

    # an output edited on disk makes the step stale too
    data["seed"] = 20240611
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = workdir / "tiny-pipeline" / "merged" / "config.json"
    cfg.write_text(cfg.read_text() + " ")
    assert run_cli("status", recipe, "--workdir", workdir, "--json") == 0
    status = {s["step"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    assert status["merge"]["why"] == ["outputs changed or missing on disk"]


def test_unknown_step_is_a_usage_error(tmp_path, llama, capsys):
    recipe = recipe_for(tmp_path, llama)
    assert run_cli("release", recipe, "--workdir", tmp_path / "b", "--only", "mrege") == 2
    assert "unknown step 'mrege'" in capsys.readouterr().err
