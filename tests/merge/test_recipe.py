"""Recipe validation: every mistake is reported with file, line and a fix, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_cli, write_recipe
from medrelease.core.errors import RecipeError
from medrelease.pipeline.recipes import load_recipe

GOOD = """\
release:
  name: tiny
  version: 1.0.0
  repo: org/tiny
  license: apache-2.0
stages:
  base: ./base
  sft: {{path: ./sft, parent: base}}
merge:
  merge_method: {method}
  base_model: base
  models:
    - model: base
      parameters: {{weight: 0.5}}
    - model: sft
      parameters: {{weight: 0.5}}
  dtype: float32
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(text)
    return p


def _error(tmp_path: Path, text: str) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, text))
    return info.value


def test_good_recipe_loads(tmp_path):
    loaded = load_recipe(_write(tmp_path, GOOD.format(method="linear")))
    assert loaded.recipe.release.name == "tiny"
    assert loaded.recipe.stages["sft"].kind == "local"
    assert loaded.recipe.stage_lineage("sft") == ["base", "sft"]
    assert len(loaded.sha256) == 64


def test_malformed_yaml_reports_line(tmp_path):
    err = _error(tmp_path, "release:\n  name: x\n  version: [1, 2\nstages: {}\n")
    assert "malformed YAML" in err.message
    assert err.where and err.where.endswith(":4")


def test_unknown_top_level_key_suggests(tmp_path):
    err = _error(tmp_path, GOOD.format(method="linear") + "gaets: {}\n")
    assert "unknown key 'gaets'" in str(err)
    assert "did you mean 'gates'" in str(err)
    assert "recipe.yaml:18" in str(err)


def test_unknown_nested_key_reports_line(tmp_path):
    text = GOOD.format(method="linear").replace("  license: apache-2.0", "  licence: apache-2.0")
    err = _error(tmp_path, text)
    assert "did you mean 'license'" in str(err)
    assert "recipe.yaml:5" in str(err)


def test_unknown_key_inside_merge_block(tmp_path):
    text = GOOD.format(method="linear").replace("  dtype: float32", "  dtyp: float32")
    err = _error(tmp_path, text)
    assert "merge.dtyp" in str(err) and "did you mean 'dtype'" in str(err)
    assert "recipe.yaml:17" in str(err)


def test_unknown_merge_parameter(tmp_path):
    text = GOOD.format(method="ties").replace("{weight: 0.5}", "{weight: 0.5, densty: 0.3}")
    err = _error(tmp_path, text)
    assert "no parameter 'densty'" in str(err) and "did you mean 'density'" in str(err)


def test_unknown_merge_method(tmp_path):
    err = _error(tmp_path, GOOD.format(method="tise"))
    assert "unknown merge method 'tise'" in str(err) and "did you mean 'ties'" in str(err)


def test_unknown_stage_name_in_merge(tmp_path):
    text = GOOD.format(method="linear").replace("- model: sft", "- model: sfft")
    err = _error(tmp_path, text)
    assert "'sfft' is not a stage" in str(err) and "did you mean 'sft'" in str(err)
    assert "recipe.yaml:15" in str(err)


def test_duplicate_key(tmp_path):
    err = _error(
        tmp_path,
        GOOD.format(method="linear").replace("  version: 1.0.0", "  version: 1\n  version: 2"),
    )
    assert "duplicate key 'version'" in str(err)


def test_bad_release_name_and_repo(tmp_path):
    text = GOOD.format(method="linear").replace("repo: org/tiny", "repo: not a repo")
    assert "owner/name" in str(_error(tmp_path, text))


def test_arcee_fusion_needs_two_models(tmp_path):
    text = (
        GOOD.format(method="arcee_fusion")
        .replace("    - model: sft\n      parameters: {weight: 0.5}\n", "")
        .replace("    - model: base\n", "    - model: base\n    - model: sft\n    - model: dpo\n")
    )
    text = text.replace("  sft: {path: ./sft, parent: base}", "  sft: ./sft\n  dpo: ./dpo")
    err = _error(tmp_path, text)
    assert "arcee_fusion" in str(err)


def test_stage_forms(tmp_path):
    text = GOOD.format(method="linear").replace(
        "  base: ./base", "  base: Qwen/Qwen3-4B-Base@abc123\n  lora: {adapter: ./lora, base: base}"
    )
    r = load_recipe(_write(tmp_path, text)).recipe
    assert r.stages["base"].kind == "hub"
    assert r.stages["base"].hub == "Qwen/Qwen3-4B-Base"
    assert r.stages["base"].revision == "abc123"
    assert r.stages["lora"].kind == "adapter"


def test_adapter_base_must_exist(tmp_path):
    text = GOOD.format(method="linear").replace(
        "  base: ./base", "  base: ./base\n  lora: {adapter: ./lora, base: bsae}"
    )
    assert "adapter base 'bsae' is not a stage" in str(_error(tmp_path, text))


def test_overrides_replace_sources(tmp_path):
    p = _write(tmp_path, GOOD.format(method="linear"))
    loaded = load_recipe(p, overrides={"base": "org/other@v1"})
    assert loaded.recipe.stages["base"].kind == "hub"
    assert loaded.recipe.stages["sft"].parent == "base"
    with pytest.raises(RecipeError, match="not a stage"):
        load_recipe(p, overrides={"nope": "x/y"})


def test_cli_validate_exit_codes(tmp_path, capsys):
    p = _write(tmp_path, GOOD.format(method="linear"))
    assert run_cli("validate", p) == 0
    bad = _write(tmp_path, GOOD.format(method="linear") + "typo_key: 1\n")
    assert run_cli("validate", bad) == 2
    err = capsys.readouterr().err
    assert "unknown key 'typo_key'" in err and "Traceback" not in err
    assert run_cli("validate", tmp_path / "missing.yaml") == 2


def test_validate_json(tmp_path, capsys):
    import json

    p = write_recipe(
        tmp_path / "r.yaml",
        {"base": "./a", "sft": "./b"},
        {
            "merge_method": "linear",
            "models": [{"model": "base"}, {"model": "sft"}],
            "parameters": {"weight": 0.5},
        },
    )
    assert run_cli("validate", p, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is True and data["merge_method"] == "linear"


def test_missing_required_parameter_caught_before_merge(tmp_path):
    text = GOOD.format(method="linear").replace(
        "    - model: base\n      parameters: {weight: 0.5}\n", "    - model: base\n"
    )
    err = _error(tmp_path, text)
    assert "requires" in str(err) and "'weight'" in str(err)


def test_unknown_generation_setting(tmp_path):
    text = GOOD.format(method="linear") + "output:\n  generation_config: {do_sampel: false}\n"
    err = _error(tmp_path, text)
    assert "do_sampel" in str(err) and "did you mean 'do_sample'" in str(err)
    assert "recipe.yaml:19" in str(err)
