"""Overlays and --set change a recipe without editing it; mistakes are clear errors."""

from __future__ import annotations

import pytest
import yaml

from helpers import run_cli, write_recipe
from medrelease.core.errors import RecipeError
from medrelease.pipeline.recipes import load_recipe

MERGE = {
    "merge_method": "linear",
    "models": [{"model": "a"}, {"model": "b"}],
    "parameters": {"weight": 0.5},
}


def test_overlay_deep_merges_and_set_assigns(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", {"a": "./a", "b": "./b"}, MERGE, seed=1)
    overlay = tmp_path / "o.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "release": {"version": "9.9.9"},
                "merge": {"parameters": {"weight": 0.25}},
                "output": {"generation_config": {"do_sample": False}},
            }
        )
    )
    loaded = load_recipe(recipe, overlays=[overlay], sets=["seed=7", "merge.models.1.model=b"])
    r = loaded.recipe
    assert r.release.version == "9.9.9" and r.release.name == "tiny-release"  # merged, not replaced
    assert r.merge["parameters"] == {"weight": 0.25}
    assert r.seed == 7
    assert r.merge["models"][1]["model"] == "b"
    assert r.output.generation_config == {"do_sample": False}
    assert any(c.startswith("overlay o.yaml sha256:") for c in loaded.changes)
    assert "set seed=7" in loaded.changes


def test_null_in_overlay_removes_a_key(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", {"a": "./a", "b": "./b"}, MERGE, seed=1)
    overlay = tmp_path / "o.yaml"
    overlay.write_text("seed: null\n")
    assert load_recipe(recipe, overlays=[overlay]).recipe.seed == 20240611  # the default


@pytest.mark.parametrize(
    "assignment,message",
    [
        ("seed", "not PATH=VALUE"),
        ("merge.models.5.model=a", "not an index"),
        ("seed.x=1", "is not a mapping"),
    ],
)
def test_bad_set(tmp_path, assignment, message):
    recipe = write_recipe(tmp_path / "r.yaml", {"a": "./a", "b": "./b"}, MERGE, seed=1)
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe, sets=[assignment])


def test_set_through_cli_is_validated(tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", {"a": "./a", "b": "./b"}, MERGE)
    assert run_cli("validate", recipe, "--set", "merge.merge_method=tise") == 2
    assert "did you mean 'ties'" in capsys.readouterr().err
    assert run_cli("validate", recipe, "--set", "merge.merge_method=ties", "--set",
                   "merge.base_model=a") == 0  # fmt: skip
