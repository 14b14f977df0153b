"""Quantize reads two records before any quant work: gates/report.json (with `checks.eval`,
the merged model's metrics a quant must recover) and its own previous record (the skip
check). A hand-edited or truncated one is one clear input error (exit 3) naming the file, the
key and what to run; never a traceback. No model is loaded: both are read before that, so the
merged folder is only a stand-in with a config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import run_cli, write_recipe
from medrelease.core.errors import InputError

RELEASE = "tiny-med"

# a valid report (records/gate_report.py) that the tests below break one way each
REPORT: dict[str, Any] = {
    "schema_version": 1,
    "passed": True,
    "candidate": "merged",
    "models": {"merged": {"kind": "merged", "path": "merged", "content_hash": "1" * 64}},
    "tasks": {"ifeval": {"preset": "ifeval", "num_fewshot": 0}},
    "metrics": [
        {"metric": "ifeval/prompt_level_strict_acc", "values": {"merged": 0.5}},
    ],
    "rules": [{"text": "ifeval/prompt_level_strict_acc >= 0.3", "passed": True}],
}


def _release(tmp_path: Path, *, evaluate: bool) -> tuple[Path, Path]:
    """(recipe, release folder): a stage folder and merged/ that hold only a config.json."""
    stage = tmp_path / "base"
    stage.mkdir()
    (stage / "config.json").write_text(json.dumps({"model_type": "llama"}))
    root = tmp_path / RELEASE
    (root / "merged").mkdir(parents=True)
    (root / "merged" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    recipe = write_recipe(
        tmp_path / "recipe.yaml",
        {"base": stage},
        {"merge_method": "linear", "models": [{"model": "base", "parameters": {"weight": 1.0}}]},
        name=RELEASE,
        gates={"tasks": ["ifeval"]},
        quantize={"gguf": {"types": ["Q8_0"]}, "checks": {"eval": evaluate}},
    )
    return recipe, root


def _quantize(
    recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    code = run_cli("quantize", recipe, "--workdir", tmp_path, *extra)
    return code, capsys.readouterr().err


def _write_report(root: Path, text: str) -> None:
    (root / "gates").mkdir()
    (root / "gates" / "report.json").write_text(text)


def _no_quant_work(root: Path) -> None:
    assert not (root / "quant" / "gguf").exists()
    manifest = root / "manifest.json"
    assert not manifest.exists() or "quantize" not in json.loads(manifest.read_text())["steps"]


def test_eval_check_on_a_truncated_gate_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe, root = _release(tmp_path, evaluate=True)
    _write_report(root, json.dumps(REPORT)[:120])
    code, err = _quantize(recipe, tmp_path, capsys)
    assert code == 3
    assert "report.json is not valid JSON" in err and "medrelease gate" in err
    assert "Traceback" not in err
    _no_quant_work(root)


def test_eval_check_on_a_hand_edited_gate_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe, root = _release(tmp_path, evaluate=True)
    report = json.loads(json.dumps(REPORT))
    report["metrics"][0]["values"]["merged"] = "0.5"  # a string: was silently no metric at all
    _write_report(root, json.dumps(report))
    code, err = _quantize(recipe, tmp_path, capsys)
    assert code == 3
    assert "gate report is malformed" in err and "metrics[0].values.merged" in err
    assert "report.json" in err and "medrelease gate" in err and "Traceback" not in err
    _no_quant_work(root)


def test_skip_check_on_a_hand_edited_quantize_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe, root = _release(tmp_path, evaluate=False)
    quant = {"family": "gguf", "type": "Q8_0", "files": {}, "checks": {}, "accepted": "yes"}
    record = {"status": "done", "quants": [quant], "outputs": {}}
    (root / "manifest.json").write_text(
        json.dumps({"schema_version": 1, "steps": {"quantize": record}})
    )
    code, err = _quantize(recipe, tmp_path, capsys)
    assert code == 3
    assert "steps.quantize.quants[0].accepted" in err and "valid boolean" in err
    assert "manifest.json" in err and "--force" in err and "Traceback" not in err

    # --force does not read the record: the step goes on to plan its units (stopped there)
    def planned(*args: Any, **kwargs: Any) -> Any:
        raise InputError("stopped where the units are planned")

    monkeypatch.setattr("medrelease.quantize.units.plan_units", planned)
    code, err = _quantize(recipe, tmp_path, capsys, "--force")
    assert code == 3
    assert "stopped where the units are planned" in err and "steps.quantize" not in err
