"""Copy the shipped templates from `cards/` (repo root) into the package.

`cards/` is where people read and edit the templates; `medrelease/data/cards/` is the copy a
pip-installed medrelease loads (an installed package has no repo checkout). After editing
`cards/`, run `python -m medrelease.card.sync_templates`; tests/card/test_templates_shipped.py
fails while the two differ.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from medrelease.card.templates import shipped_dir


def repo_cards_dir() -> Path:
    # src/medrelease/card/sync_templates.py -> repo root
    return Path(__file__).resolve().parents[3] / "cards"


def template_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.j2"))}


def sync(src: Path | None = None, dst: Path | None = None) -> list[str]:
    """Make `dst` hold exactly the templates of `src`; return the names that changed."""
    src = src or repo_cards_dir()
    dst = dst or shipped_dir()
    if not src.is_dir():
        raise SystemExit(f"{src} not found: run this from a medrelease source checkout")
    dst.mkdir(parents=True, exist_ok=True)
    want, have = template_files(src), template_files(dst)
    changed = sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
    for name in changed:
        if name in want:
            shutil.copyfile(src / name, dst / name)
        else:
            (dst / name).unlink()
    return changed


if __name__ == "__main__":
    names = sync()
    sys.stdout.write(("updated: " + ", ".join(names) if names else "already in sync") + "\n")
