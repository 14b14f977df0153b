"""Fixtures for card tests: a tiny release folder (recipe + manifest + report, no model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from card.card_fixture import load, make_release


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, Path]:
    return make_release(tmp_path)


@pytest.fixture
def rendered(release: tuple[Path, Path]) -> dict[str, str]:
    """card name -> README text, written by the real step."""
    from medrelease.card.step import CARD_FILES, card_release
    from medrelease.core.console import Reporter

    recipe, workdir = release
    card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    folder = workdir / "tiny-med" / "card"
    return {name: (folder / rel).read_text() for name, rel in CARD_FILES.items()}
