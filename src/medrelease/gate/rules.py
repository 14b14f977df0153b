"""Gate rules: floors, maximum regression and minimum gain, with a paired bootstrap CI.

`delta` is candidate - baseline. For lower-is-better metrics (e.g. violation_rate) a
regression is an increase, so `max_drop` bounds the increase and `min_gain` asks for a
decrease. The paired bootstrap resamples the documents both models answered and gives a
confidence interval of delta; with `significant: true` a comparison is decided on it:

- max_drop fails only when the whole interval lies beyond the allowed drop;
- min_gain passes only when the gain is at least `min_gain` and the interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Mapping

from medrelease.gate.config import GateRule
from medrelease.records.gate_report import MetricEntry, RuleEntry


def paired_bootstrap_ci(
    cand: dict[str, list[float]],
    base: dict[str, list[float]],
    *,
    iters: int,
    confidence: float,
    seed: int,
) -> tuple[float, float] | None:
    """CI of (candidate - baseline) over shared documents; samples are [num, den] pairs."""
    import numpy as np

    keys = sorted(set(cand) & set(base))
    if len(keys) < 2:
        return None
    c = np.array([cand[k] for k in keys], dtype=float)
    b = np.array([base[k] for k in keys], dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(keys), size=(iters, len(keys)))
    with np.errstate(invalid="ignore", divide="ignore"):
        dc = c[idx, 0].sum(1) / c[idx, 1].sum(1)
        db = b[idx, 0].sum(1) / b[idx, 1].sum(1)
    d = dc - db
    d = d[~np.isnan(d)]
    if d.size == 0:
        return None
    alpha = (1 - confidence) / 2
    return float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha))


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def rule_text(rule: GateRule, hib: bool) -> str:
    m = rule.metric
    if rule.min is not None:
        return f"{m} >= {rule.min:g}"
    if rule.max is not None:
        return f"{m} <= {rule.max:g}"
    if rule.max_drop is not None:
        return (
            f"{m} >= {rule.vs} - {rule.max_drop:g}"
            if hib
            else f"{m} <= {rule.vs} + {rule.max_drop:g}"
        )
    gain = rule.min_gain or 0.0
    sig = " (significant)" if rule.significant else ""
    return (f"{m} >= {rule.vs} + {gain:g}" if hib else f"{m} <= {rule.vs} - {gain:g}") + sig


def evaluate_rule(
    rule: GateRule,
    metric: MetricEntry | None,
    values: Mapping[str, float | None],
    samples: dict[str, dict[str, list[float]]],
    *,
    candidate: str,
    iters: int,
    seed: int,
) -> RuleEntry:
    """One entry of report.json's `rules` (values/samples are keyed by model name)."""
    hib = rule.higher_is_better
    if hib is None:
        hib = bool(metric["higher_is_better"]) if metric else True
    out = _entry(rule, hib, values, candidate)
    cand = out["candidate"]
    if metric is None or cand is None:
        out["reason"] = f"metric {rule.metric} was not produced by the task"
    elif rule.min is not None or rule.max is not None:
        _judge_bound(rule, cand, out)
    else:
        baseline = out["baseline"]
        if baseline is None:
            out["reason"] = f"baseline {rule.vs} has no value for {rule.metric}"
        else:
            ci = _delta_ci(rule, samples, candidate=candidate, iters=iters, seed=seed)
            _judge_comparison(rule, hib, cand - baseline, ci, out)
    return out


def _entry(
    rule: GateRule, hib: bool, values: Mapping[str, float | None], candidate: str
) -> RuleEntry:
    """The rule's entry before it is judged: failed, with every key in its place."""
    return {
        "text": rule_text(rule, hib),
        "metric": rule.metric,
        "kind": rule.kind,
        "vs": rule.vs,
        "threshold": next(
            v for v in (rule.min, rule.max, rule.max_drop, rule.min_gain, 0.0) if v is not None
        ),
        "higher_is_better": hib,
        "candidate": values.get(candidate),
        "baseline": values.get(rule.vs) if rule.vs else None,
        "delta": None,
        "ci": None,
        "significant": None,
        "passed": False,
        "reason": "",
    }


def _judge_bound(rule: GateRule, cand: float, out: RuleEntry) -> None:
    """An absolute floor (`min`) or ceiling (`max`) on the candidate's value."""
    if rule.min is not None:
        out["passed"] = cand >= rule.min
        out["reason"] = f"{cand:.3f} {'>=' if out['passed'] else '<'} {rule.min:g}"
    elif rule.max is not None:
        out["passed"] = cand <= rule.max
        out["reason"] = f"{cand:.3f} {'<=' if out['passed'] else '>'} {rule.max:g}"


def _delta_ci(
    rule: GateRule,
    samples: dict[str, dict[str, list[float]]],
    *,
    candidate: str,
    iters: int,
    seed: int,
) -> tuple[float, float] | None:
    """The paired-bootstrap CI of candidate - baseline, when both have sample-level results."""
    if rule.vs not in samples or candidate not in samples:
        return None
    return paired_bootstrap_ci(
        samples[candidate], samples[rule.vs], iters=iters, confidence=rule.confidence, seed=seed
    )


def _judge_comparison(
    rule: GateRule, hib: bool, delta: float, ci: tuple[float, float] | None, out: RuleEntry
) -> None:
    """`max_drop` / `min_gain` against the baseline, on the delta or, if asked, on its CI."""
    out["delta"] = delta
    gain = delta if hib else -delta  # improvement in the metric's good direction
    if ci is not None:
        out["ci"] = [ci[0], ci[1]]
    gain_ci = None if ci is None else ((ci[0], ci[1]) if hib else (-ci[1], -ci[0]))
    if rule.significant:
        if gain_ci is None:
            out["reason"] = "significance needs sample-level results for both models"
            return
        out["significant"] = gain_ci[0] > 0 or gain_ci[1] < 0
    word = "gain" if hib else "improvement (decrease)"
    if rule.max_drop is not None:
        limit = -rule.max_drop
        if rule.significant and gain_ci is not None:
            out["passed"] = gain_ci[1] >= limit
            out["reason"] = (
                f"{word} CI [{_fmt(gain_ci[0])}, {_fmt(gain_ci[1])}] "
                f"{'reaches' if out['passed'] else 'lies entirely below'} {_fmt(limit)}"
            )
        else:
            out["passed"] = gain >= limit
            out["reason"] = f"{word} {_fmt(gain)} {'>=' if out['passed'] else '<'} {_fmt(limit)}"
        return
    need = rule.min_gain or 0.0
    out["passed"] = gain >= need
    out["reason"] = f"{word} {_fmt(gain)} {'>=' if gain >= need else '<'} {_fmt(need)}"
    if rule.significant and gain_ci is not None:
        sig = gain_ci[0] > 0
        out["passed"] = out["passed"] and sig
        out["reason"] += f"; CI [{_fmt(gain_ci[0])}, {_fmt(gain_ci[1])}] " + (
            "excludes 0" if sig else "includes 0 (not significant)"
        )
