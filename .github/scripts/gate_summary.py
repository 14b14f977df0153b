"""Render a medrelease gates/report.json as Markdown for the GitHub job summary.

    python gate_summary.py build/<release>/gates/report.json >> "$GITHUB_STEP_SUMMARY"

Standard library only: it runs in the action before (or without) medrelease's own imports.
Every number comes from the report (docs/CONTRACTS.md, `gates/report.json`); nothing is computed
here except formatting.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _cell(value: Any, decimals: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{decimals}f}"
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"[{_cell(value[0], decimals)}, {_cell(value[1], decimals)}]"
    # a cell must not break the table: pipes escaped, newlines folded
    return str(value).replace("|", "\\|").replace("\n", " ")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _signed(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–"
    return f"{value:+.4f}"


def render(report: dict[str, Any]) -> str:
    passed = bool(report.get("passed"))
    candidate = report.get("candidate", "merged")
    models = list((report.get("models") or {}).keys())
    lines = [f"## Gate {'passed ✅' if passed else 'FAILED ❌'} for `{_cell(candidate)}`", ""]

    harness = report.get("harness") or {}
    if harness:
        parts = [f"{k} {_cell(v)}" for k, v in harness.items()]
        lines += ["lm-evaluation-harness: " + ", ".join(parts), ""]

    rules = report.get("rules") or []
    lines += ["### Rules", ""]
    if rules:
        lines.append(_row(["", "rule", "candidate", "baseline", "delta", "CI", "reason"]))
        lines.append(_row(["---"] * 7))
        for r in rules:
            mark = "✅" if r.get("passed") else "❌"
            lines.append(
                _row(
                    [
                        mark,
                        _cell(r.get("text") or r.get("metric")),
                        _cell(r.get("candidate")),
                        _cell(r.get("baseline")),
                        _signed(r.get("delta")),
                        _cell(r.get("ci")),
                        _cell(r.get("reason")),
                    ]
                )
            )
    else:
        lines.append("No rules: the gate only recorded metrics.")
    lines.append("")

    metrics = report.get("metrics") or []
    if metrics:
        lines += ["### Metrics", ""]
        lines.append(_row(["metric", *(f"`{_cell(m)}`" for m in models)]))
        lines.append(_row(["---"] * (1 + len(models))))
        for m in metrics:
            values = m.get("values") or {}
            stderr = m.get("stderr") or {}
            cells = []
            for model in models:
                v = values.get(model)
                se = stderr.get(model)
                text = _cell(v)
                if isinstance(se, float) and v is not None:
                    text += f" ± {se:.4f}"
                cells.append(text)
            arrow = "↑" if m.get("higher_is_better", True) else "↓"
            lines.append(_row([f"{_cell(m.get('metric'))} {arrow}", *cells]))
        lines.append("")

    reproduce = report.get("reproduce") or []
    if reproduce:
        lines += ["<details><summary>Reproduce</summary>", "", "```sh", *reproduce, "```", ""]
        lines += ["</details>", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: gate_summary.py REPORT_JSON\n")
        return 2
    path = Path(argv[0])
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: cannot read gate report {path}: {exc}\n")
        return 3
    sys.stdout.write(render(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
