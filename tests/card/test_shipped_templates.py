"""One copy of the card templates: `cards/` is what the package loads and what a wheel ships."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from medrelease.card.templates import SHIPPED, shipped_dir

REPO = Path(__file__).resolve().parents[2]


def templates(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.j2"))}


def test_the_package_loads_the_cards_folder_itself():
    # in a checkout (and an editable install) the package's data/cards is a link to cards/
    assert shipped_dir().resolve() == (REPO / "cards").resolve()
    link = REPO / "src" / "medrelease" / "data" / "cards"
    assert link.is_symlink(), "src/medrelease/data/cards must link to cards/, not copy it"
    for name in SHIPPED.values():
        assert (shipped_dir() / name).is_file()
    assert not (REPO / "src" / "medrelease" / "card" / "sync_templates.py").exists()


def test_package_data_is_declared():
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["medrelease"]
    assert "data/**/*" in globs, "the templates reach the wheel through data/**/*"


@pytest.mark.slow
def test_a_built_wheel_carries_the_templates_as_files(tmp_path):
    """Build a wheel from a copy of the source tree (links kept) and read the templates in it."""
    src = tmp_path / "src-tree"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "cards", src / "cards")
    shutil.copytree(
        REPO / "src" / "medrelease",
        src / "src" / "medrelease",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         str(src), "-w", str(out)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("medrelease-*.whl")
    with zipfile.ZipFile(wheel) as z:
        inside = {
            Path(info.filename).name: z.read(info)
            for info in z.infolist()
            if info.filename.startswith("medrelease/data/cards/") and info.filename.endswith(".j2")
        }
    assert inside == templates(REPO / "cards")
