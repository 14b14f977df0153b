"""Snapshot tests of the three shipped cards for the tiny release in card_fixture.py.

A change to a template or to the card context shows up here as a diff. When the change is
intended, update the stored cards and review them like code:

    MEDRELEASE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/card/test_snapshots.py
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("MEDRELEASE_UPDATE_SNAPSHOTS") == "1"


@pytest.mark.parametrize("card", ["model", "gguf", "awq"])
def test_card_matches_snapshot(rendered, card):
    path = SNAPSHOTS / f"{card}.md"
    if UPDATE:
        path.write_text(rendered[card])
    assert path.is_file(), f"no snapshot {path}: run with MEDRELEASE_UPDATE_SNAPSHOTS=1"
    want = path.read_text()
    if rendered[card] != want:
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(keepends=True),
                rendered[card].splitlines(keepends=True),
                fromfile=str(path),
                tofile=f"{card} (rendered)",
            )
        )
        pytest.fail(
            f"{card} card differs from its snapshot (MEDRELEASE_UPDATE_SNAPSHOTS=1 to accept):\n"
            + diff
        )
