"""The release license is checked against every parent's before a card is written."""

from __future__ import annotations

import pytest

from card.card_fixture import load, release_for_cards
from medrelease.card.errors import LicenseConflict
from medrelease.card.licenses import compatible
from medrelease.card.step import card_release
from medrelease.core.console import Reporter


def _run(tmp_path, **kw):
    recipe, workdir = release_for_cards(tmp_path, **kw)
    card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    return workdir / "tiny-med" / "card" / "README.md"


def test_incompatible_parent_stops_the_card(tmp_path):
    with pytest.raises(LicenseConflict) as info:
        _run(tmp_path, licenses={"grpo": "cc-by-nc-4.0"})
    err = info.value
    assert "'grpo'" in err.message and "cc-by-nc-4.0" in err.message
    assert err.exit_code == 3
    assert "license_override" in (err.hint or "")
    assert not (tmp_path / "build" / "tiny-med" / "card").exists()


def test_unknown_parent_license_stops_the_card(tmp_path):
    with pytest.raises(LicenseConflict, match="states no license"):
        _run(tmp_path, licenses={"dpo": None})


def test_declared_license_fills_a_gap(tmp_path):
    card = _run(tmp_path, licenses={"dpo": None}, card={"stage_licenses": {
        "base": "apache-2.0", "dpo": "apache-2.0"}})  # fmt: skip
    text = card.read_text()
    assert "| dpo | apache-2.0 | recipe (card.stage_licenses) | yes |" in text


def test_declaration_contradicting_the_checkpoint_is_refused(tmp_path):
    with pytest.raises(LicenseConflict, match="README says 'mit'"):
        _run(tmp_path, card={"stage_licenses": {"base": "apache-2.0", "grpo": "apache-2.0"}})


def test_override_is_stated_in_the_card(tmp_path):
    reason = "The GRPO authors granted a written exception for this release."
    card = _run(
        tmp_path,
        licenses={"grpo": "cc-by-nc-4.0"},
        card={"license_override": {"reason": reason}},
    )
    text = card.read_text()
    assert "**License override.**" in text and reason in text
    assert "| grpo | cc-by-nc-4.0 | checkpoint README | no: " in text


def test_override_needs_a_real_reason(tmp_path):
    from medrelease.core.errors import RecipeError

    recipe, _ = release_for_cards(tmp_path, card={"license_override": {"reason": "ok"}})
    with pytest.raises(RecipeError, match="reason"):
        load(recipe)


def test_unknown_stage_in_stage_licenses(tmp_path):
    from medrelease.core.errors import RecipeError

    with pytest.raises(RecipeError, match="did you mean 'grpo'"):
        _run(tmp_path, card={"stage_licenses": {"base": "apache-2.0", "grp": "mit"}})


@pytest.mark.parametrize(
    ("parent", "release", "ok"),
    [
        ("apache-2.0", "apache-2.0", True),
        ("mit", "apache-2.0", True),
        ("bsd-3-clause", "llama3.1", True),
        ("apache-2.0", "mit", False),
        ("llama3.1", "apache-2.0", False),
        ("cc-by-nc-4.0", "apache-2.0", False),
        ("other", "other", False),
    ],
)
def test_policy(parent, release, ok):
    assert compatible(parent, release)[0] is ok


def test_stand_in_stages_use_the_recipe_checkpoint_license(tmp_path):
    from medrelease.pipeline.recipes import load_recipe

    recipe, workdir = release_for_cards(tmp_path, card={"stage_licenses": {}})
    standin = tmp_path / "standin"
    standin.mkdir()  # no README: a stand-in says nothing about the real parent
    loaded = load_recipe(
        recipe, overrides={"dpo": str(standin), "base": str(standin)}, check_merge=False
    )
    result = card_release(loaded, workdir=workdir, reporter=Reporter(quiet=True))
    parents = {p["stage"]: p for p in result.record["licenses"]["parents"]}
    # dpo: the recipe's ./dpo checkpoint states apache-2.0
    assert parents["dpo"]["license"] == "apache-2.0" and parents["dpo"]["verified"]
    # base: a Hub id not in the (offline) cache: not verified, said in the card and warned
    assert parents["base"]["verified"] is False
    assert any("not verified" in w for w in result.warnings)
    text = (workdir / "tiny-med" / "card" / "README.md").read_text()
    assert "| base | not stated | not verified: --stage stand-in | not verified: " in text


def test_without_stand_in_an_unreadable_hub_parent_stops(tmp_path):
    with pytest.raises(LicenseConflict, match="'base' states no license"):
        _run(tmp_path, card={"stage_licenses": {}})
