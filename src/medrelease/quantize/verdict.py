"""Rejected quants in a release: one rule, for standalone `quantize` and for `release` alike.

Every listed GGUF type and the AWQ scheme is required unless the recipe marks it optional
(`quantize.gguf.optional: [Q2_K]`, `quantize.awq.optional: true`).

* A rejected required quant fails the step: its record says `status: failed` (so `release`
  and `status` never take it as current) and `quantize_release` raises `QuantRejected`
  (exit 5), naming the quant, the measure and its limit, before card and publish run.
* A rejected optional quant is left out of the release (never published, as every rejected
  quant); the step is done, and the card says which quant was not shipped and why, from the
  `rejection` its record entry carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medrelease.core.errors import VerificationError
from medrelease.quantize.measure.limits import limit_rules
from medrelease.records.quantize import QuantCheck, QuantEntry, Rejection


class QuantRejected(VerificationError):
    """A required quant failed its checks (exit 5). `result`: the step's result, recorded,
    for the command to show its table before the error."""

    result: Any = None


def rejection(checks: Mapping[str, QuantCheck]) -> Rejection | None:
    """Why a quant is rejected: its first failed check (None when every check passed).

    The logits check names the measure that broke its limit, its value and the limit; any
    other check is named as the measure, with no value or limit (its detail says what failed)."""
    if not checks:
        return {
            "check": "checks",
            "measure": "checks",
            "value": None,
            "limit": None,
            "limit_key": None,
            "detail": "no checks ran",
        }
    for name, check in checks.items():
        if check.get("ok"):
            continue
        detail = str(check.get("detail") or "failed")
        measure, limit = check.get("metric"), check.get("threshold")
        if name == "logits" and measure is not None and limit is not None:
            keys = [r.key for r in limit_rules() if r.measure == measure]
            return {
                "check": name,
                "measure": measure,
                "value": check.get("value"),
                "limit": limit,
                "limit_key": keys[0] if keys else None,
                "detail": detail,
            }
        return {
            "check": name,
            "measure": name,
            "value": None,
            "limit": None,
            "limit_key": None,
            "detail": detail,
        }
    return None


def required_rejected(quants: list[QuantEntry]) -> list[QuantEntry]:
    """The rejected quants that stop the release (an entry without `required` is required)."""
    return [q for q in quants if not q["accepted"] and q.get("required", True)]


def describe(q: QuantEntry) -> str:
    """'gguf Q4_K_M: logits kld_mean 0.31 > limit 0.2 (max_kld_mean)' for a rejected quant."""
    why = q.get("rejection") or rejection(q["checks"])
    if why is None:
        return f"{q['family']} {q['type']}: {q.get('reason') or 'rejected'}"
    if why["limit"] is not None:
        value = why["value"]
        shown = f"{value:.4g}" if isinstance(value, int | float) else str(value)
        return (
            f"{q['family']} {q['type']}: {why['measure']} {shown} broke its limit "
            f"{why['limit']:.4g} ({why['limit_key']})"
        )
    return f"{q['family']} {q['type']}: {why['check']} failed ({why['detail']})"


def enforce(quants: list[QuantEntry]) -> None:
    """Raise QuantRejected (exit 5) when a required quant was rejected: the one decision of
    the exit of `medrelease quantize` and of `medrelease release` on quants."""
    stop = required_rejected(quants)
    if not stop:
        return
    listed = "; ".join(describe(q) for q in stop)
    first = stop[0]
    why = first.get("rejection")
    if first["family"] == "gguf":
        key = f"quantize.gguf.thresholds.{first['type']}.{why['limit_key']}" if why else None
        optional = f"quantize.gguf.optional: [{first['type']}]"
    else:
        key = f"quantize.awq.thresholds.{why['limit_key']}" if why else None
        optional = "quantize.awq.optional: true"
    loosen = f"loosen the limit ({key}) if it is too strict, " if why and why["limit_key"] else ""
    raise QuantRejected(
        f"{len(stop)} required quant(s) rejected: {listed}",
        hint=f"the rejected files are under quant/rejected/; {loosen}drop the type, or mark it "
        f"optional ({optional}) to release without it (the card then says why)",
    )
