"""Judging a quant's logit measures against the limits of its type (quantize/measure/limits.py)."""

from __future__ import annotations

from typing import Any

from medrelease.quantize.measure.limits import Thresholds, limit_rules
from medrelease.records.quantize import QuantCheck


def judge_logits(measures: dict[str, Any], limits: Thresholds) -> QuantCheck:
    """Compare measures with every limit set; the record names the first failed one."""
    applied = limits.applied()
    # (measure, value, limit, comparison)
    failed: list[tuple[str, Any, float | None, str]] = []
    checked: list[tuple[str, Any, float | None, str]] = []
    for rule in limit_rules():
        if rule.key not in applied or rule.measure not in measures:
            continue
        value, bound = measures[rule.measure], applied[rule.key]
        checked.append((rule.measure, value, bound, rule.op))
        if not rule.holds(value, bound):
            failed.append((rule.measure, value, bound, rule.op))
    # the headline: the first failed limit; for a pass, the PPL ratio (what the manifest
    # contract and the cards show), or the first limit applied if the PPL ratio has none
    ppl = [c for c in checked if c[0] == "ppl_ratio"]
    if failed:
        head = failed[0]
    elif ppl or not checked:
        head = ("ppl_ratio", measures.get("ppl_ratio"), applied.get("max_ppl_ratio"), "<=")
    else:
        head = checked[0]
    if failed:
        detail = "; ".join(f"{m} {v:.4g} not {op} {b:.4g}" for m, v, b, op in failed)
    else:
        parts = []
        if "kld_mean" in measures:
            parts.append(f"KLD mean {measures['kld_mean']:.4g} (p99 {measures['kld_p99']:.4g})")
        parts.append(f"top-1 agreement {measures['top1_agreement']:.3f}")
        parts.append(f"ppl ratio {measures['ppl_ratio']:.4f}")
        if "tokens" in measures:
            parts.append(f"{measures['tokens']} tokens")
        detail = ", ".join(parts)
    return {
        "ok": not failed,
        "metric": head[0],
        "value": head[1],
        "threshold": head[2],
        "detail": detail,
        "measures": measures,
        "limits": applied,
    }


def merged_limits(defaults: Thresholds, override: Thresholds | None) -> Thresholds:
    """Per-type defaults with the recipe's values on top (only the keys it sets)."""
    if override is None:
        return defaults
    return defaults.model_copy(update=override.model_dump(exclude_unset=True))
