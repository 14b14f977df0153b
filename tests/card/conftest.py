"""Fixtures for card tests: a tiny release folder (recipe + manifest + report, no model),
built by tests/releases.py from card_fixture.py's records."""

from __future__ import annotations

from pathlib import Path

import pytest

from card.card_fixture import load, release_for_cards


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, Path]:
    recipe, workdir = release_for_cards(tmp_path)
    return recipe, workdir


@pytest.fixture
def rendered(release: tuple[Path, Path]) -> dict[str, str]:
    """card name -> README text, written by the real step."""
    from medrelease.card.step import CARD_FILES, card_release
    from medrelease.core.console import Reporter

    recipe, workdir = release
    card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    folder = workdir / "tiny-med" / "card"
    return {name: (folder / rel).read_text() for name, rel in CARD_FILES.items()}
