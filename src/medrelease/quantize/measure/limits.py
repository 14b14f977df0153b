"""The limits a quant is judged by: each one spelled once, here.

A limit is a field of `Thresholds` (the recipe's `quantize.gguf.thresholds.<TYPE>` and
`quantize.awq.thresholds`); the field says which measure of quantize/measure/logits.py it
bounds and from which side. The per-type defaults are `Thresholds` values too
(quantize/gguf/quant_types.py, quantize/awq/check.py), the judge walks these fields
(quantize/measure/judge.py), and the record keeps the limits applied as {field name: value}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from medrelease.recipe.base import Section

Op = Literal["<=", ">="]


def _bound(measure: str, op: Op) -> dict[str, Any]:
    """What a limit field bounds, kept in the field's JSON schema (read by `limit_rules`)."""
    return {"measure": measure, "op": op}


class Thresholds(Section):
    """Acceptance limits of one quant against the merged model, on held-out text.

    The measures are llama-perplexity's `--kl-divergence` statistics
    (quantize/measure/logits.py); per-type defaults are in quantize/gguf/quant_types.py,
    measured in docs/quant-checks.md. The field order is the order failures are reported in."""

    max_kld_mean: float | None = Field(
        default=None,
        gt=0,
        description="mean KL(merged || quant) per scored token, in nats",
        json_schema_extra=_bound("kld_mean", "<="),
    )
    max_kld_p99: float | None = Field(
        default=None,
        gt=0,
        description="99th percentile of the per-token KL divergence",
        json_schema_extra=_bound("kld_p99", "<="),
    )
    max_ppl_ratio: float | None = Field(
        default=None,
        gt=0,
        description="ppl(quant)/ppl(merged)",
        json_schema_extra=_bound("ppl_ratio", "<="),
    )
    min_top1_agreement: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="share of tokens where both rank the same token first",
        json_schema_extra=_bound("top1_agreement", ">="),
    )
    max_abs_logit_diff: float | None = Field(
        default=None,
        gt=0,
        description="largest absolute logit difference; no default uses it any more (it grows "
        "with the logit scale and depth of a model, so it rejects healthy float quants)",
        json_schema_extra=_bound("max_abs_logit_diff", "<="),
    )

    def applied(self) -> dict[str, float]:
        """The limits set, {field name: value}: what a quant's record keeps as `limits`."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


@dataclass(frozen=True)
class LimitRule:
    key: str  # the Thresholds field, e.g. max_kld_mean
    measure: str  # what it bounds, a key of logit_measures(), e.g. kld_mean
    op: Op

    def holds(self, value: float, bound: float) -> bool:
        return value <= bound if self.op == "<=" else value >= bound


def limit_rules() -> tuple[LimitRule, ...]:
    """Every limit, in the order failures are reported, read off the Thresholds fields."""
    rules = []
    for key, info in Thresholds.model_fields.items():
        extra = info.json_schema_extra
        assert isinstance(extra, dict), f"Thresholds.{key} does not say what it bounds"
        rules.append(LimitRule(key, str(extra["measure"]), "<=" if extra["op"] == "<=" else ">="))
    return tuple(rules)
