"""Publish reads the manifest and the gate report through their typed definitions: a
hand-edited record is exit 3 with the file, the key and the step to re-run, before anything
is written anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import run_cli
from releases import BuiltRelease


def _publish(
    release: BuiltRelease, out: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    code = run_cli(
        "publish",
        str(release.recipe),
        "--workdir",
        str(release.workdir),
        "--target",
        f"dir://{out}",
    )
    return code, capsys.readouterr().err


def test_hand_edited_quant_files(
    release: BuiltRelease, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = release.manifest()
    quant = data["steps"]["quantize"]["quants"][0]
    quant["files"] = sorted(quant["files"])  # a list of paths instead of path -> {sha256, size}
    release.write_manifest(data)
    code, err = _publish(release, tmp_path / "out", capsys)
    assert code == 3
    assert "steps.quantize.quants[0].files" in err and "medrelease quantize" in err
    assert "manifest.json" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_card_record_with_a_wrong_type(
    release: BuiltRelease, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = release.manifest()
    data["steps"]["card"]["outputs"]["card/README.md"]["size"] = "2 KB"
    release.write_manifest(data)
    code, err = _publish(release, tmp_path / "out", capsys)
    assert code == 3
    assert "steps.card.outputs.card/README.md.size" in err and "medrelease card" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def _rewrite_report(release: BuiltRelease, edit: Any) -> None:
    """Edit the gate report and record its new sha256, as if the gate had written it."""
    from medrelease.core.hashing import file_record

    path = release.root / "gates" / "report.json"
    report = json.loads(path.read_text())
    edit(report)
    path.write_text(json.dumps(report))
    data = release.manifest()
    data["steps"]["gate"]["report"] = {"gates/report.json": file_record(path)}
    release.write_manifest(data)


def test_gate_report_rule_without_verdict(
    release: BuiltRelease, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _rewrite_report(release, lambda r: r["rules"][0].pop("passed"))
    code, err = _publish(release, tmp_path / "out", capsys)
    assert code == 3
    assert "gate report is malformed" in err and "rules[0].passed: missing" in err
    assert "medrelease gate" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
