"""Fixtures for the GitHub Action tests (helpers live in action_support.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from action.action_support import LintResults, make_actionlint


@pytest.fixture(scope="session")
def actionlint() -> Callable[..., LintResults]:
    """lint(*paths) -> {path: [problems]}; skips (fails on CI) when actionlint is missing."""
    return make_actionlint()
