"""What `medrelease release` prints at the end: the gate table, the quant table and the publish
plan, as `gate`, `quantize` and `publish --dry-run` print them; a failed rule with its numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import run_cli
from pipeline.test_release import recipe_for


@pytest.mark.slow
def test_release_ends_with_the_step_tables(tmp_path: Path, llama, capsys, wide_console) -> None:
    recipe = recipe_for(tmp_path, llama)
    workdir = tmp_path / "build"
    assert run_cli("release", recipe, "--workdir", workdir, "--no-publish") == 0
    out = capsys.readouterr().out
    assert "gates: PASSED" in out  # gate_table's title
    assert "demo_mcq/acc" in out and ">= 0" in out
    assert "quantize" in out and "Q8_0" in out and "ppl ratio" in out  # quant_table
    assert out.index("release") < out.index("gates: PASSED") < out.index("ppl ratio")
    assert not (workdir / "tiny-pipeline" / ".lock").exists(), "the lock goes with the run"

    # nothing re-runs, the tables are still the release's state; the dry run shows its plan
    export = tmp_path / "export"
    assert run_cli("release", recipe, "-w", workdir, "-t", f"dir://{export}", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "gates: PASSED" in out and "ppl ratio" in out
    assert "publish plan (dry run: nothing written)" in out
    assert "tiny-pipeline-Q8_0.gguf" in out
    assert not export.exists()


@pytest.mark.slow
def test_a_failed_rule_shows_its_numbers(tmp_path: Path, llama, capsys, wide_console) -> None:
    recipe = recipe_for(tmp_path, llama)
    data = yaml.safe_load(recipe.read_text())
    data["gates"]["rules"] = [
        {"metric": "demo_mcq/acc", "min": 2.0},
        {"metric": "demo_mcq/acc", "vs": "base", "min_gain": 1.5},
    ]
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    workdir = tmp_path / "build"
    assert run_cli("release", recipe, "--workdir", workdir, "--no-publish") == 4
    captured = capsys.readouterr()
    report = json.loads((workdir / "tiny-pipeline" / "gates" / "report.json").read_text())
    floor, gain = report["rules"]
    assert "gates: FAILED" in captured.out  # the table, printed before the error
    measured = f"measured {floor['candidate']:.4f}"
    assert f"FAIL demo_mcq/acc >= 2: {measured}" in captured.out
    base, delta = gain["baseline"], gain["delta"]
    expected = f"demo_mcq/acc >= base + 1.5: {measured}, base {base:.4f}, delta {delta:+.4f}"
    assert expected in captured.out
    # the error line alone says it too (CI logs often show only the last lines)
    err = captured.err
    assert "error:" in err and measured in err and f"base {base:.4f}" in err

    # --allow-failed-gates: the release goes on past the failed gate (and says so)
    code = run_cli("release", recipe, "-w", workdir, "--no-publish", "--allow-failed-gates")
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "going on: --allow-failed-gates" in captured.err
    assert "gates: FAILED" in captured.out and "ppl ratio" in captured.out
