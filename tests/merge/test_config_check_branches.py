"""The merge block's and output block's checks that tests/merge/test_recipe.py does not reach:
required method parameters, a missing method, mergekit's own schema, decoding settings (at
load time and when finalize applies them). Each is one RecipeError with place and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import write_recipe
from medrelease.core.errors import RecipeError
from medrelease.pipeline.recipes import load_recipe

STAGES = {"base": "./base", "sft": {"path": "./sft", "parent": "base"}}
LINEAR: dict[str, Any] = {
    "merge_method": "linear",
    "models": [
        {"model": "base", "parameters": {"weight": 0.5}},
        {"model": "sft", "parameters": {"weight": 0.5}},
    ],
    "dtype": "float32",
}


def _error(tmp_path: Path, merge: dict[str, Any], **extra: Any) -> RecipeError:
    recipe = write_recipe(tmp_path / "recipe.yaml", STAGES, merge, **extra)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    return info.value


def test_the_good_block_loads(tmp_path):
    recipe = write_recipe(tmp_path / "recipe.yaml", STAGES, LINEAR)
    assert load_recipe(recipe).recipe.merge["merge_method"] == "linear"


def test_merge_method_is_required(tmp_path):
    merge = {k: v for k, v in LINEAR.items() if k != "merge_method"}
    err = _error(tmp_path, merge)
    assert "merge.merge_method is required" in str(err)
    assert err.hint == "e.g. merge_method: ties"


def test_shared_required_parameter(tmp_path):
    # slerp's `t` is one value for the whole merge: mergekit would only fail mid-merge
    merge = {"merge_method": "slerp", "base_model": "base", "models": [
        {"model": "base"}, {"model": "sft"}], "dtype": "float32"}  # fmt: skip
    err = _error(tmp_path, merge)
    assert "merge method 'slerp' needs parameter 't'" in str(err)
    assert err.hint == "add `parameters: {t: ...}` to merge:"


def test_per_model_required_parameter_names_the_model(tmp_path):
    merge = {**LINEAR, "models": [LINEAR["models"][0], {"model": "sft"}]}
    err = _error(tmp_path, merge)
    assert "model 'sft' has no 'weight', which merge method 'linear' requires" in str(err)
    assert err.where and err.where.endswith("recipe.yaml:17")  # the `- model: sft` line


def test_non_base_parameter_not_required_of_the_base(tmp_path):
    # ties needs `weight` on every model but the base: a base without one is fine
    merge = {"merge_method": "ties", "base_model": "base", "models": [
        {"model": "base"}, {"model": "sft", "parameters": {"weight": 1.0, "density": 0.5}}],
        "dtype": "float32"}  # fmt: skip
    recipe = write_recipe(tmp_path / "recipe.yaml", STAGES, merge)
    assert load_recipe(recipe).recipe.merge["merge_method"] == "ties"


def test_unknown_decoding_setting_at_load(tmp_path):
    err = _error(tmp_path, LINEAR, output={"generation_config": {"temprature": 0.7}})
    assert "unknown decoding setting 'temprature'" in str(err)
    assert "did you mean 'temperature'" in str(err)
    assert err.where and err.where.endswith("recipe.yaml:23")  # the key itself
    assert err.hint and "GenerationConfig names" in err.hint


def test_unknown_decoding_settings_at_finalize(tmp_path, llama):
    """finalize applies settings no recipe check may have seen: every unknown one is named."""
    import shutil

    from medrelease.merge.finalize import finalize_output

    out = tmp_path / "merged"
    shutil.copytree(llama["sft"], out)
    with pytest.raises(RecipeError) as info:
        finalize_output(
            out,
            chat_template=None,
            generation={"temperature": 0.7, "temprature": 0.7, "top_kk": 3},
            generation_base=None,
            tokenizer_source=None,
        )
    assert "unknown decoding setting(s) temprature, top_kk" in str(info.value)
    assert info.value.hint and "GenerationConfig names" in info.value.hint
