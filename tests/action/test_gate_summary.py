"""The job-summary renderer of the action: every number from gates/report.json, a valid table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from action.action_support import REPO

SCRIPT = REPO / ".github" / "scripts" / "gate_summary.py"
SAMPLE = Path(__file__).with_name("sample_report.json")


def render(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=False
    )


def table_rows(markdown: str, header_start: str) -> list[list[str]]:
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        # split on unescaped pipes only
        cells = [c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")]
        rows.append(cells)
    return rows


def test_summary_shows_verdict_rules_and_metrics():
    proc = render(SAMPLE)
    assert proc.returncode == 0, proc.stderr
    md = proc.stdout
    report = json.loads(SAMPLE.read_text())
    assert md.startswith("## Gate FAILED")
    rules = table_rows(md, "|  | rule |")
    assert len(rules) == len(report["rules"])
    assert rules[0][0] == "✅" and rules[1][0] == "❌"
    assert rules[1][2:5] == ["0.5000", "0.5200", "-0.0200"]
    assert rules[1][5] == "[-0.0500, 0.0100]"
    assert rules[1][6] == "delta -0.020 < -0.010 | dropped"  # the pipe did not split the row
    metrics = table_rows(md, "| metric |")
    assert [r[0] for r in metrics] == ["medical_safety/violation_rate ↓", "mmlu_medical/acc ↑"]
    assert metrics[0][1:] == ["0.0250 ± 0.0125", "0.3000 ± 0.0500"]
    assert "lm_eval --model hf" in md


def test_a_passing_report_says_so(tmp_path: Path):
    report = json.loads(SAMPLE.read_text())
    report["passed"] = True
    report["rules"] = []
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    md = render(path).stdout
    assert md.startswith("## Gate passed") and "No rules" in md


def test_an_unreadable_report_is_one_clear_error(tmp_path: Path):
    path = tmp_path / "report.json"
    path.write_text("{not json")
    proc = render(path)
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert "cannot read gate report" in proc.stderr and "Traceback" not in proc.stderr
