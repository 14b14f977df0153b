"""The terminal view of a gate report: one row per metric (and per rule on it)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from medrelease.records.gate_report import GateReport, RuleEntry


def _num(v: Any) -> str:
    return "—" if v is None else f"{v:.4f}"


def failed_rule_text(r: RuleEntry) -> str:
    """A failed rule with what it measured: the value, and for a comparison the baseline's
    value and the delta (with its CI), so the line alone says how far from passing it is."""
    cand, base, delta = r.get("candidate"), r.get("baseline"), r.get("delta")
    text = r["text"]
    if cand is None or (r.get("vs") and base is None):
        return f"{text}: {r.get('reason') or 'no value'}"
    text += f": measured {cand:.4f}"
    if r.get("vs"):
        text += f", {r['vs']} {_num(base)}"
        if delta is not None:
            text += f", delta {delta:+.4f}"
        if ci := r.get("ci"):
            text += f" (CI [{ci[0]:+.4f}, {ci[1]:+.4f}])"
        if r.get("reason"):
            text += f"; {r['reason']}"
    return text


def gate_table(report: GateReport) -> RenderableType:
    models = list(report["models"])
    cand = report["candidate"]
    baselines = [m for m in models if m != cand]
    verdict = "[green]PASSED[/green]" if report["passed"] else "[red]FAILED[/red]"
    table = Table(
        title=f"gates: {verdict}", caption="↓ lower is better; delta: candidate - baseline [CI]"
    )
    table.add_column("metric", overflow="fold", ratio=1, min_width=18)
    table.add_column(cand, justify="right", no_wrap=True)
    for b in baselines:
        table.add_column(b, justify="right", no_wrap=True)
    table.add_column("delta", justify="right", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("result", no_wrap=True)
    rules_by_metric: dict[str, list[RuleEntry]] = {}
    for entry in report["rules"]:
        rules_by_metric.setdefault(entry["metric"], []).append(entry)
    rows: list[tuple[str, list[str], RuleEntry | None]] = []
    for m in report["metrics"]:
        label = m["metric"] + ("" if m["higher_is_better"] else " ↓")
        vals = [_num(m["values"].get(n)) for n in [cand, *baselines]]
        rules = rules_by_metric.pop(m["metric"], [])
        rows += [(label, vals, r) for r in rules] or [(label, vals, None)]
    for leftover in rules_by_metric.values():  # rules on metrics no task produced
        rows += [(r["metric"], ["—"] * (1 + len(baselines)), r) for r in leftover]
    for label, vals, r in rows:
        if r is None:
            table.add_row(label, *vals, "", "", "")
            continue
        delta = "" if r["delta"] is None else f"{r['delta']:+.4f}"
        if ci := r.get("ci"):
            delta += f"\n[{ci[0]:+.3f}, {ci[1]:+.3f}]"
        rule = r["text"].removeprefix(r["metric"]).strip()
        ok = "[green]pass[/green]" if r["passed"] else "[red]FAIL[/red]"
        table.add_row(label, *vals, delta, rule, ok)
    reasons = [
        Text.assemble(("FAIL", "red"), " ", failed_rule_text(r))
        for r in report["rules"]
        if not r["passed"]
    ]
    return Group(table, *reasons) if reasons else table
