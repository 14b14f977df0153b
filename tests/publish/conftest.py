"""The publish tests' release folder; the local Hub and `tiny_model` are in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from publish.pubhelpers import Release, build_release


@pytest.fixture
def release(tmp_path: Path, tiny_model: Path) -> Release:
    return build_release(tmp_path, tiny_model)
