"""Where the files shipped inside the package live (templates, tasks, texts, the demo)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def packaged(*parts: str) -> Path:
    """A path under `medrelease/data/` (works for editable installs and wheels alike)."""
    return Path(str(resources.files("medrelease").joinpath("data", *parts)))
