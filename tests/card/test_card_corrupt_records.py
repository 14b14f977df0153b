"""A hand-edited or truncated record is one clear input error (exit 3) naming the file, the
key and the step to re-run: never a traceback, never a KeyError inside a template."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from card.card_fixture import RELEASE, REPORT, release_for_cards
from helpers import run_cli

pytestmark = pytest.mark.slow  # the recipe loader imports mergekit (~10-20 s on 2 busy cores)


def _card(recipe: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run_cli("card", recipe, "--workdir", workdir)
    return code, capsys.readouterr().err


def _edit_manifest(workdir: Path, edit: Any) -> None:
    path = workdir / RELEASE / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_hand_edited_quant_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe, workdir = release_for_cards(tmp_path)

    def edit(data: dict[str, Any]) -> None:
        data["steps"]["quantize"]["quants"][0]["accepted"] = "yes"  # a string, not true/false

    _edit_manifest(workdir, edit)
    code, err = _card(recipe, workdir, capsys)
    assert code == 3
    assert "steps.quantize.quants[0].accepted" in err and "valid boolean" in err
    assert "manifest.json" in err and "medrelease quantize" in err
    assert "Traceback" not in err
    assert not (workdir / RELEASE / "card").exists()


def test_merge_record_missing_its_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe, workdir = release_for_cards(tmp_path)
    _edit_manifest(workdir, lambda data: data["steps"]["merge"].pop("status"))
    code, err = _card(recipe, workdir, capsys)
    assert code == 3
    assert "steps.merge.status: missing" in err and "medrelease merge" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r["rules"][1].pop("passed"), "rules[1].passed: missing"),
        (lambda r: r["tasks"]["ifeval"].update(num_fewshot="zero"), "tasks.ifeval.num_fewshot"),
        (lambda r: r.update(candidate="merged-v2"), "candidate 'merged-v2' is not one of"),
        (lambda r: r.update(schema_version=2), "schema_version 2, expected 1"),
        (lambda r: r["metrics"][0]["values"].update(sft=0.5), "values for unknown models"),
    ],
    ids=["rule-without-verdict", "task-setting-type", "candidate", "schema", "unknown-model"],
)
def test_hand_edited_gate_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, expected: str
) -> None:
    report = copy.deepcopy(REPORT)
    edit(report)
    recipe, workdir = release_for_cards(tmp_path, report=report)
    code, err = _card(recipe, workdir, capsys)
    assert code == 3
    assert "gate report is malformed" in err and expected in err
    assert "report.json" in err and "medrelease gate" in err
    assert "Traceback" not in err


def test_truncated_gate_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe, workdir = release_for_cards(tmp_path)
    path = workdir / RELEASE / "gates" / "report.json"
    path.write_text(path.read_text()[:200])
    code, err = _card(recipe, workdir, capsys)
    assert code == 3
    assert "is not valid JSON" in err and "medrelease gate" in err and "Traceback" not in err


def test_manifest_steps_not_an_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe, workdir = release_for_cards(tmp_path)
    (workdir / RELEASE / "manifest.json").write_text(json.dumps({"steps": []}))
    code, err = _card(recipe, workdir, capsys)
    assert code == 3
    assert "'steps' is not an object" in err and "Traceback" not in err


def test_status_names_the_corrupt_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe, workdir = release_for_cards(tmp_path)
    _edit_manifest(workdir, lambda data: data["steps"]["merge"].update(outputs=["merged/x"]))
    assert run_cli("status", recipe, "--workdir", workdir) == 3
    err = capsys.readouterr().err
    assert "steps.merge.outputs" in err and "medrelease merge" in err and "Traceback" not in err
