"""The `quantize:` recipe section: typos and impossible settings fail when the recipe loads."""

from __future__ import annotations

import pytest

from helpers import write_recipe
from medrelease.core.errors import RecipeError
from medrelease.pipeline.recipes import load_recipe
from medrelease.quantize.config import QuantizeConfig, size_to_bytes
from medrelease.quantize.measure.judge import judge_logits, merged_limits
from medrelease.quantize.measure.limits import Thresholds

MERGE = {"merge_method": "linear", "models": [{"model": "base", "parameters": {"weight": 1.0}}]}


def _load(tmp_path, quantize):
    (tmp_path / "base").mkdir(exist_ok=True)
    return load_recipe(
        write_recipe(tmp_path / "r.yaml", {"base": "./base"}, MERGE, quantize=quantize)
    )


def test_contract_example_loads(tmp_path):
    loaded = _load(
        tmp_path,
        {
            "gguf": {
                "types": ["q8_0", "Q4_K_M"],
                "thresholds": {"Q4_K_M": {"max_ppl_ratio": 1.15}},
            },
            "awq": {"scheme": "W4A16_ASYM", "calibration": "default", "num_samples": 64},
        },
    )
    cfg = loaded.recipe.quantize
    assert cfg is not None and cfg.gguf is not None and cfg.awq is not None
    assert cfg.gguf.types == ["Q8_0", "Q4_K_M"]  # normalised
    assert cfg.gguf.thresholds["Q4_K_M"].max_ppl_ratio == 1.15
    assert cfg.awq.ignore == ["lm_head"]


def test_list_shorthand():
    assert QuantizeConfig.model_validate({"gguf": ["Q6_K"]}).gguf.types == ["Q6_K"]  # type: ignore[union-attr]


def test_unknown_type_suggests_and_locates(tmp_path):
    with pytest.raises(RecipeError) as info:
        _load(tmp_path, {"gguf": {"types": ["Q4KM"]}})
    msg = str(info.value)
    assert "unknown GGUF type 'Q4KM'" in msg and "did you mean 'Q4_K_M'" in msg
    assert "r.yaml:" in msg


def test_unknown_key_and_threshold_for_unlisted_type(tmp_path):
    with pytest.raises(RecipeError, match="did you mean 'thresholds'"):
        _load(tmp_path, {"gguf": {"types": ["Q8_0"], "treshold": {}}})
    with pytest.raises(RecipeError, match="thresholds for \\['Q4_K_M'\\]"):
        _load(tmp_path, {"gguf": {"types": ["Q8_0"], "thresholds": {"Q4_K_M": {}}}})


def test_sizes():
    assert size_to_bytes("48G") == 48 * 10**9
    assert size_to_bytes("1m") == 10**6
    with pytest.raises(ValueError):
        size_to_bytes("48 gigabytes")


def test_recipe_overrides_only_the_limits_it_sets():
    defaults = Thresholds(max_ppl_ratio=1.08, min_top1_agreement=0.9)
    limits = merged_limits(defaults, Thresholds(max_ppl_ratio=1.2))
    assert limits.max_ppl_ratio == 1.2 and limits.min_top1_agreement == 0.9


def test_judge_names_the_failed_limit():
    measures = {"ppl_ratio": 1.3, "max_abs_logit_diff": 0.5, "top1_agreement": 0.95}
    verdict = judge_logits(measures, Thresholds(max_ppl_ratio=1.1, max_abs_logit_diff=1.0))
    assert not verdict["ok"]
    assert (verdict["metric"], verdict["value"], verdict["threshold"]) == ("ppl_ratio", 1.3, 1.1)
    assert judge_logits(measures, Thresholds(max_ppl_ratio=1.5))["ok"]
