"""The demo's stand-in stages, built once per test session (about 80 s of CPU)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], float]:
    """(stage folders, wall seconds the build took)."""
    from medrelease.core.console import Reporter
    from medrelease.demo.standins import build_demo_stages

    root = tmp_path_factory.mktemp("demo") / "stages"
    start = time.perf_counter()
    stages = build_demo_stages(root, reporter=Reporter(quiet=True))
    return stages, time.perf_counter() - start


@pytest.fixture(scope="session")
def demo_stages(demo_build: tuple[dict[str, Path], float]) -> dict[str, Path]:
    return demo_build[0]
