"""Template errors name the template and the line, exit 2, and leave nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from card.card_fixture import load, release_for_cards
from helpers import run_cli
from medrelease.card.errors import CardTemplateError
from medrelease.card.step import card_release
from medrelease.core.console import Reporter

GOOD_TOP = "# {{ release.name }}\n\n{{ sections.intended_use }}\n{{ sections.medical_safety }}\n"


def _render(tmp_path: Path, template: str, **card) -> CardTemplateError:
    (tmp_path / "mine.md.j2").write_text(template)
    recipe, workdir = release_for_cards(tmp_path, card={"template": "mine.md.j2", **card})
    with pytest.raises(CardTemplateError) as info:
        card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    assert not (workdir / "tiny-med" / "card").exists()
    return info.value


def test_undefined_variable_names_template_and_line(tmp_path):
    err = _render(tmp_path, GOOD_TOP + "\nline five\n{{ release.nmae }}\n")
    assert "undefined variable" in err.message
    assert "nmae" in err.message
    assert err.where is not None and err.where.endswith("mine.md.j2:7")
    assert err.exit_code == 2


def test_syntax_error_names_template_and_line(tmp_path):
    err = _render(tmp_path, GOOD_TOP + "{% for x in stages %}\n{{ x.name }}\n")
    assert "syntax error" in err.message
    assert err.where is not None and "mine.md.j2:" in err.where
    line = int(err.where.rsplit(":", 1)[1])
    assert line in (5, 6, 7)  # Jinja reports the end of the template for an unclosed block


def test_syntax_error_in_the_middle(tmp_path):
    err = _render(tmp_path, GOOD_TOP + "ok\n{{ release.name | }}\nmore\n")
    assert err.where is not None and err.where.endswith("mine.md.j2:6")


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ release.__class__ }}",
        "{{ lineage.append.__self__.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_escape_is_refused_with_location(tmp_path, escape):
    err = _render(tmp_path, GOOD_TOP + "\n" + escape + "\n")
    assert "sandbox" in err.message or "undefined" in err.message
    assert err.where is not None and err.where.endswith("mine.md.j2:6")


def test_error_in_a_block_override_names_the_recipe_key_and_line(tmp_path):
    recipe, workdir = release_for_cards(
        tmp_path, card={"blocks": {"overview": "fine\n{{ release.__class__.__mro__ }}"}}
    )
    with pytest.raises(CardTemplateError) as info:
        card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    assert info.value.where == "card.blocks.overview:2"


def test_unknown_block_suggests(tmp_path):
    recipe, workdir = release_for_cards(tmp_path, card={"blocks": {"overveiw": "x"}})
    with pytest.raises(CardTemplateError) as info:
        card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    assert "did you mean 'overview'" in str(info.value)
    assert "recipe.yaml:" in str(info.value)


def test_block_override_replaces_the_block(tmp_path):
    recipe, workdir = release_for_cards(
        tmp_path, card={"blocks": {"overview": "Built for {{ release.name }} tests."}}
    )
    card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    text = (workdir / "tiny-med" / "card" / "README.md").read_text()
    assert "Built for tiny-med tests." in text
    assert "is a `ties` merge of" not in text


def test_cli_reports_one_line_and_exit_code_2(tmp_path, capsys):
    (tmp_path / "mine.md.j2").write_text(GOOD_TOP + "{{ nope }}\n")
    recipe, workdir = release_for_cards(tmp_path, card={"template": "mine.md.j2"})
    code = run_cli("card", recipe, "--workdir", workdir)
    err = capsys.readouterr().err
    assert code == 2
    assert "mine.md.j2:5" in err and "nope" in err
    assert "Traceback" not in err


def test_missing_template_file(tmp_path):
    recipe, workdir = release_for_cards(tmp_path, card={"template": "nowhere.md.j2"})
    from medrelease.core.errors import RecipeError

    with pytest.raises(RecipeError) as info:
        card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    assert "nowhere.md.j2" in str(info.value) and "recipe.yaml:" in str(info.value)


def test_unknown_card_key_is_located_with_a_suggestion(tmp_path):
    from medrelease.core.errors import RecipeError

    recipe, _ = release_for_cards(tmp_path, card={"templat": "x.md.j2"})
    with pytest.raises(RecipeError) as info:
        load(recipe)
    assert "did you mean 'template'" in str(info.value)
    assert "recipe.yaml:" in str(info.value)
