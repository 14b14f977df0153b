"""Each rule kind passing and failing, lower-is-better metrics, and the paired bootstrap."""

from __future__ import annotations

import pytest

from medrelease.gate.config import GateRule
from medrelease.gate.rules import evaluate_rule, paired_bootstrap_ci


def _metric(hib: bool = True) -> dict:
    return {"higher_is_better": hib}


def _run(rule: dict, cand: float, base: float | None = None, hib: bool = True, samples=None):
    values = {"merged": cand}
    if base is not None:
        values["base"] = base
    return evaluate_rule(
        GateRule.model_validate(rule),
        _metric(hib),
        values,
        samples or {},
        candidate="merged",
        iters=2000,
        seed=0,
    )


@pytest.mark.parametrize(
    "rule, cand, base, hib, passed",
    [
        ({"metric": "t/acc", "min": 0.30}, 0.31, None, True, True),
        ({"metric": "t/acc", "min": 0.30}, 0.29, None, True, False),
        ({"metric": "t/violation_rate", "max": 0.05}, 0.04, None, False, True),
        ({"metric": "t/violation_rate", "max": 0.05}, 0.06, None, False, False),
        ({"metric": "t/acc", "vs": "base", "max_drop": 0.01}, 0.495, 0.50, True, True),
        ({"metric": "t/acc", "vs": "base", "max_drop": 0.01}, 0.48, 0.50, True, False),
        ({"metric": "t/s/acc", "vs": "base", "min_gain": 0.02}, 0.53, 0.50, True, True),
        ({"metric": "t/s/acc", "vs": "base", "min_gain": 0.02}, 0.51, 0.50, True, False),
        # lower is better: a regression is an increase, a gain is a decrease
        ({"metric": "t/violation_rate", "vs": "base", "max_drop": 0.01}, 0.105, 0.10, False, True),
        ({"metric": "t/violation_rate", "vs": "base", "max_drop": 0.01}, 0.12, 0.10, False, False),
        ({"metric": "t/violation_rate", "vs": "base", "min_gain": 0.02}, 0.07, 0.10, False, True),
        ({"metric": "t/violation_rate", "vs": "base", "min_gain": 0.02}, 0.13, 0.10, False, False),
        # the rule may override lm-eval's direction
        (
            {"metric": "t/ppl", "vs": "base", "max_drop": 0.5, "higher_is_better": False},
            10.2,
            10.0,
            True,
            True,
        ),
    ],
)
def test_rule_kinds(rule: dict, cand: float, base: float | None, hib: bool, passed: bool) -> None:
    out = _run(rule, cand, base, hib)
    assert out["passed"] is passed, out["reason"]
    assert out["kind"] == GateRule.model_validate(rule).kind
    if base is not None:
        assert out["delta"] == pytest.approx(cand - base)


def test_rule_texts() -> None:
    assert _run({"metric": "t/acc", "vs": "base", "max_drop": 0.01}, 0.5, 0.5)["text"] == (
        "t/acc >= base - 0.01"
    )
    low = _run({"metric": "t/v", "vs": "base", "max_drop": 0.01}, 0.1, 0.1, hib=False)
    assert low["text"] == "t/v <= base + 0.01"


def test_missing_metric_fails_with_reason() -> None:
    out = evaluate_rule(
        GateRule.model_validate({"metric": "t/nope", "min": 0.1}),
        None,
        {},
        {},
        candidate="merged",
        iters=100,
        seed=0,
    )
    assert out["passed"] is False and "not produced" in out["reason"]


def _samples(values: list[float]) -> dict[str, list[float]]:
    return {f"t:{i}": [v, 1.0] for i, v in enumerate(values)}


def test_bootstrap_ci_matches_a_clear_difference() -> None:
    cand = _samples([1.0] * 90 + [0.0] * 10)
    base = _samples([1.0] * 50 + [0.0] * 50)
    lo, hi = paired_bootstrap_ci(cand, base, iters=2000, confidence=0.95, seed=0)
    assert 0.25 < lo < 0.4 < hi < 0.55  # true delta 0.4


def test_bootstrap_handles_instance_level_pairs() -> None:
    # [num, den]: 2 of 3 instructions followed vs 1 of 3
    cand = {f"t:{i}": [2.0, 3.0] for i in range(20)}
    base = {f"t:{i}": [1.0, 3.0] for i in range(20)}
    lo, hi = paired_bootstrap_ci(cand, base, iters=500, confidence=0.95, seed=0)
    assert lo == pytest.approx(1 / 3) and hi == pytest.approx(1 / 3)


def test_significant_min_gain_needs_ci_above_zero() -> None:
    rule = {"metric": "t/s/acc", "vs": "base", "min_gain": 0.02, "significant": True}
    # small sample, noisy gain: point gain passes min_gain, the CI includes 0 -> fail
    cand = _samples([1, 0, 1, 0, 1, 1, 0, 0, 1, 0])
    base = _samples([0, 1, 1, 0, 0, 1, 0, 1, 0, 0])
    noisy = _run(rule, 0.5, 0.4, samples={"merged": cand, "base": base})
    assert noisy["ci"][0] < 0 < noisy["ci"][1]
    assert noisy["significant"] is False and noisy["passed"] is False
    assert "not significant" in noisy["reason"]
    # large consistent gain -> significant -> pass
    cand = _samples([1.0] * 80 + [0.0] * 20)
    base = _samples([1.0] * 40 + [0.0] * 60)
    clear = _run(rule, 0.8, 0.4, samples={"merged": cand, "base": base})
    assert clear["significant"] is True and clear["passed"] is True


def test_significant_max_drop_fails_only_on_a_clear_regression() -> None:
    rule = {"metric": "t/acc", "vs": "base", "max_drop": 0.01, "significant": True}
    cand = _samples([1, 0, 1, 0, 1, 0, 0, 1, 0, 1])
    base = _samples([1, 1, 1, 0, 1, 0, 0, 1, 0, 1])
    noisy = _run(rule, 0.5, 0.6, samples={"merged": cand, "base": base})
    assert noisy["passed"] is True  # point drop 0.10 > 0.01, but the CI reaches it
    cand = _samples([0.0] * 80 + [1.0] * 20)
    base = _samples([1.0] * 80 + [0.0] * 20)
    clear = _run(rule, 0.2, 0.8, samples={"merged": cand, "base": base})
    assert clear["passed"] is False and "entirely below" in clear["reason"]
