"""Intended use and medical safety are in every card; a template without them is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from card.card_fixture import load, release_for_cards
from medrelease.card.errors import CardTemplateError
from medrelease.card.required import MEDICAL_SAFETY
from medrelease.card.step import card_release
from medrelease.card.templates import SHIPPED, shipped_dir
from medrelease.core.console import Reporter


def test_every_shipped_card_has_both_sections(rendered):
    for name, text in rendered.items():
        assert "## Intended use" in text, name
        assert "### Out-of-scope use" in text, name
        assert "## Medical safety" in text, name
        assert "not a medical device" in text, name


def test_every_shipped_template_references_both_sections():
    for name in SHIPPED.values():
        source = (shipped_dir() / name).read_text()
        assert "sections.intended_use" in source, name
        assert "sections.medical_safety" in source, name


def _run(tmp_path: Path, card: dict) -> tuple[Path, Path]:
    recipe, workdir = release_for_cards(tmp_path, card=card)
    card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    return recipe, workdir


def test_template_without_safety_section_is_refused(tmp_path):
    (tmp_path / "mine.md.j2").write_text("# {{ release.name }}\n\n{{ sections.intended_use }}\n")
    with pytest.raises(CardTemplateError) as info:
        _run(tmp_path, {"template": "mine.md.j2"})
    assert "medical safety" in info.value.message
    assert "mine.md.j2" in str(info.value)
    assert not (tmp_path / "build" / "tiny-med" / "card").exists(), "nothing half-written"


def test_template_without_intended_use_is_refused(tmp_path):
    (tmp_path / "mine.md.j2").write_text("# x\n\n{{ sections.medical_safety }}\n")
    with pytest.raises(CardTemplateError, match="intended use"):
        _run(tmp_path, {"template": "mine.md.j2"})


def test_sections_survive_extension_and_cannot_be_edited(tmp_path):
    # the shipped main card's required sections are not blocks: a template extending it
    # keeps them; a template that edits the text is refused
    (tmp_path / "mine.md.j2").write_text(
        '{% extends "builtin/model.md.j2" %}{% block overview %}{% endblock %}'
    )
    _, workdir = _run(tmp_path, {"template": "mine.md.j2"})  # extending keeps the sections
    text = (workdir / "tiny-med" / "card" / "README.md").read_text()
    assert MEDICAL_SAFETY.splitlines()[0] in text
    (tmp_path / "bad.md.j2").write_text(
        "{{ sections.intended_use }}\n{{ sections.medical_safety|replace('not', '') }}"
    )
    with pytest.raises(CardTemplateError, match="medical safety"):
        _run(tmp_path, {"template": "bad.md.j2"})


def test_recipe_text_extends_the_sections(tmp_path):
    (tmp_path / "use.md").write_text("Answering USMLE-style questions about {{ release.name }}.")
    _, workdir = _run(
        tmp_path,
        {
            "intended_use": {"file": "use.md"},
            "out_of_scope": "Triage.",
            "safety_notes": "Evaluated in English only.",
        },
    )
    text = (workdir / "tiny-med" / "card" / "README.md").read_text()
    assert "Answering USMLE-style questions about tiny-med." in text
    assert "### Out-of-scope use\n\nTriage." in text
    assert "Evaluated in English only." in text
    assert "not a medical device" in text  # the fixed text stays


def test_quant_card_templates_follow_the_same_rule(tmp_path):
    (tmp_path / "gguf.md.j2").write_text("# {{ release.name }} GGUF\n{{ sections.intended_use }}")
    with pytest.raises(CardTemplateError) as info:
        _run(tmp_path, {"gguf_template": "gguf.md.j2"})
    assert "medical safety" in info.value.message and "gguf.md.j2" in str(info.value)
    (tmp_path / "gguf.md.j2").write_text(
        "# Custom GGUF card\n{{ sections.intended_use }}\n{{ sections.medical_safety }}"
    )
    _, workdir = _run(tmp_path, {"gguf_template": "gguf.md.j2"})
    assert (
        "# Custom GGUF card" in (workdir / "tiny-med" / "card" / "gguf" / "README.md").read_text()
    )


def test_a_token_in_recipe_text_is_never_written(tmp_path, monkeypatch):
    from medrelease.core.errors import MedreleaseError

    token = "hf_" + "x" * 30
    monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(MedreleaseError, match="token"):
        _run(tmp_path, {"safety_notes": f"contact us with {token}"})
    assert not (tmp_path / "build" / "tiny-med" / "card").exists()
