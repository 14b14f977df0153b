"""`medrelease card` from the command line: tables, --json, --variables, clear input errors."""

from __future__ import annotations

import json

import pytest

from card.card_fixture import RELEASE, release_for_cards
from helpers import run_cli

pytestmark = pytest.mark.slow  # the recipe loader imports mergekit (~10-20 s on 2 busy cores)


def test_card_json_summary_and_manifest(tmp_path, capsys):
    recipe, workdir = release_for_cards(tmp_path)
    assert run_cli("card", recipe, "--workdir", workdir, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == "card" and summary["status"] == "done"
    assert summary["cards"] == {
        "model": "card/README.md",
        "gguf": "card/gguf/README.md",
        "awq": "card/awq/README.md",
    }
    manifest = json.loads((workdir / RELEASE / "manifest.json").read_text())
    rec = manifest["steps"]["card"]
    assert set(rec["outputs"]) == {
        "card/README.md",
        "card/gguf/README.md",
        "card/awq/README.md",
        "card/metrics.png",
        # the task files the gates ran, published as eval/ (mmlu_medical's group, the safety task)
        "card/eval/mmlu_medical/mmlu_medical.yaml",
        "card/eval/medical_safety/medical_safety.yaml",
        "card/eval/medical_safety/_medical_safety_yaml",
        "card/eval/medical_safety/utils.py",
        "card/eval/medical_safety/prompts.jsonl",
    }
    from medrelease.core.hashing import sha256_file_uncached

    for rel, meta in rec["outputs"].items():
        assert meta["sha256"] == sha256_file_uncached(workdir / RELEASE / rel)
    assert len(rec["inputs_hash"]) == 64 and rec["tools"]["jinja2"]
    assert "merge" in manifest["steps"], "other steps' records are kept"


def test_variables_lists_the_context(tmp_path, capsys):
    recipe, workdir = release_for_cards(tmp_path)
    assert run_cli("card", recipe, "--workdir", workdir, "--variables") == 0
    ctx = json.loads(capsys.readouterr().out)
    assert {"release", "evaluation", "quants", "sections", "license", "lineage"} <= set(ctx)
    assert not (workdir / RELEASE / "card").exists()


def test_missing_report_is_an_input_error(tmp_path, capsys):
    recipe, workdir = release_for_cards(tmp_path)
    (workdir / RELEASE / "gates" / "report.json").unlink()
    assert run_cli("card", recipe, "--workdir", workdir) == 3
    err = capsys.readouterr().err
    assert "gate report" in err and "medrelease gate" in err


def test_malformed_report_is_an_input_error(tmp_path, capsys):
    bad = {"schema_version": 1, "candidate": "merged", "models": {"merged": {}},
           "metrics": [{"metric": "x/acc", "values": {"merged": "high"}}], "rules": [],
           "tasks": {}}  # fmt: skip
    recipe, workdir = release_for_cards(tmp_path, report=bad)
    assert run_cli("card", recipe, "--workdir", workdir) == 3
    assert "'values' must map model -> number or null" in capsys.readouterr().err


def test_without_quantize_only_the_main_card(tmp_path, capsys):
    recipe, workdir = release_for_cards(tmp_path, quantize=False)
    assert run_cli("card", recipe, "--workdir", workdir, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert list(summary["cards"]) == ["model"]
    assert any("quantize" in w for w in summary["warnings"])
    text = (workdir / RELEASE / "card" / "README.md").read_text()
    assert "## Quantized versions" not in text


def test_rerun_replaces_the_cards(tmp_path):
    recipe, workdir = release_for_cards(tmp_path)
    assert run_cli("card", recipe, "--workdir", workdir) == 0
    (workdir / RELEASE / "card" / "stale.txt").write_text("old")
    assert run_cli("card", recipe, "--workdir", workdir) == 0
    assert not (workdir / RELEASE / "card" / "stale.txt").exists()
