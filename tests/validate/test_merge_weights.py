"""Merge weights that cannot be normalised are refused when the recipe is loaded
(merge/config_check.py), for every method that divides by their sum, and only for those."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import write_recipe
from medrelease.core.errors import RecipeError
from medrelease.pipeline.recipes import load_recipe


def _merge(method: str, weights: list[Any], **params: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "merge_method": method,
        "models": [
            {"model": name, "parameters": {"weight": w}}
            for name, w in zip(("sft", "grpo"), weights, strict=True)
        ],
        "dtype": "float32",
    }
    if method != "linear":
        block["base_model"] = "base"
    if params:
        block["parameters"] = params
    return block


CASES: list[tuple[str, list[Any], dict[str, Any], bool]] = [
    ("linear", [0.5, -0.5], {}, True),  # normalize defaults to true: NaN weights
    ("linear", [0.5, -0.5], {"normalize": False}, False),  # no division
    ("linear", [0.5, 0.5], {}, False),
    ("linear", [[1.0, 0.5], [-1.0, 0.0]], {}, True),  # a gradient: 0 at the first layers
    ("linear", [[1.0, 0.5], [-0.5, 0.0]], {}, False),
    ("ties", [0.3, -0.3], {"density": 0.5}, True),  # normalize defaults to true
    ("task_arithmetic", [0.3, -0.3], {}, False),  # normalize defaults to false
    ("task_arithmetic", [0.3, -0.3], {"normalize": True}, True),
    ("nuslerp", [0.5, -0.5], {}, True),  # t = w1 / sum, silently 0.5 at sum 0
    ("multislerp", [1.0, -1.0], {}, True),
    ("multislerp", [1.0, -1.0], {"normalize_weights": False}, False),
]


@pytest.mark.parametrize("method, weights, params, refused", CASES)
def test_weights_that_cannot_normalise(
    tmp_path: Path,
    llama: dict[str, Path],
    method: str,
    weights: list[Any],
    params: dict[str, Any],
    refused: bool,
) -> None:
    stages = {k: llama[k] for k in ("base", "sft", "grpo")}
    recipe = write_recipe(tmp_path / "r.yaml", stages, _merge(method, weights, **params))
    if not refused:
        load_recipe(recipe)
        return
    with pytest.raises(RecipeError, match="sum to 0") as info:
        load_recipe(recipe)
    assert f"{recipe}:" in str(info.value) and info.value.hint
    assert ("normalize" in info.value.hint) == (method not in ("nuslerp",))


def test_slices_are_checked_per_slice(tmp_path: Path, llama: dict[str, Path]) -> None:
    src = [
        {"model": "sft", "layer_range": [0, 2], "parameters": {"weight": 1.0}},
        {"model": "grpo", "layer_range": [0, 2], "parameters": {"weight": -1.0}},
    ]
    merge = {"merge_method": "linear", "slices": [{"sources": src}], "dtype": "float32"}
    stages = {k: llama[k] for k in ("sft", "grpo")}
    recipe = write_recipe(tmp_path / "r.yaml", stages, merge)
    with pytest.raises(RecipeError, match=r"sum to 0 \(sft 1.0, grpo -1.0\)"):
        load_recipe(recipe)
