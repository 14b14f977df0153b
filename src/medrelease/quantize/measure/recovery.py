"""Gate tasks on a quant: each metric must recover a share of the merged model's value."""

from __future__ import annotations

from typing import Any

from medrelease.records.gate_report import GateReport


def parent_metrics(report: GateReport) -> dict[str, tuple[float, bool]]:
    """metric -> (merged model's value, higher is better), from gates/report.json."""
    out: dict[str, tuple[float, bool]] = {}
    for m in report.get("metrics", []):
        value = (m.get("values") or {}).get(report.get("candidate", "merged"))
        if isinstance(value, int | float):
            out[m["metric"]] = (float(value), bool(m.get("higher_is_better", True)))
    return out


def judge_recovery(
    quant: dict[str, float], parent: dict[str, tuple[float, bool]], min_recovery: float
) -> dict[str, Any]:
    """Recovery = quant/merged (merged/quant when lower is better); each must reach the floor."""
    recovery: dict[str, float | None] = {}
    failed: list[str] = []
    for metric, (ref, higher) in sorted(parent.items()):
        got = quant.get(metric)
        if got is None:
            recovery[metric] = None
            failed.append(f"{metric} missing")
            continue
        num, den = (got, ref) if higher else (ref, got)
        ratio = 1.0 if num == den else (num / den if den else float("inf"))
        recovery[metric] = round(ratio, 6)
        if ratio < min_recovery:
            failed.append(f"{metric} {got:.4g} vs merged {ref:.4g} (recovery {ratio:.3f})")
    detail = (
        f"below {min_recovery:g} recovery: " + "; ".join(failed)
        if failed
        else f"{len(parent)} metric(s) recover >= {min_recovery:g}"
    )
    return {
        "ok": not failed,
        "detail": detail,
        "metrics": quant,
        "recovery": recovery,
        "min_recovery": min_recovery,
    }
