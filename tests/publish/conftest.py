"""The publish tests' release folder; the local Hub and `tiny_model` are in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from publish.pubhelpers import release_for_publish
from releases import BuiltRelease


@pytest.fixture
def release(tmp_path: Path, tiny_model: Path) -> BuiltRelease:
    return release_for_publish(tmp_path, tiny_model)
