"""Free-space checks before writing large artifacts (merged models, GGUF intermediates)."""

from __future__ import annotations

import shutil
from pathlib import Path

from medrelease.core.errors import EnvironmentProblem


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def require_free_space(folder: Path, needed: int, what: str, hint: str) -> None:
    """Raise EnvironmentProblem when the filesystem holding `folder` has less than `needed`."""
    probe = folder
    while not probe.exists():  # the folder may not exist yet: ask its nearest parent
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise EnvironmentProblem(
            f"not enough free disk at {probe}: {what} needs about {human_bytes(needed)}, "
            f"{human_bytes(free)} is free",
            hint=hint,
        )
