"""The templates in cards/ are the ones the package ships (medrelease/data/cards/)."""

from __future__ import annotations

from medrelease.card.sync_templates import repo_cards_dir, sync, template_files
from medrelease.card.templates import SHIPPED, shipped_dir


def test_package_copy_equals_cards_folder():
    assert template_files(repo_cards_dir()) == template_files(shipped_dir()), (
        "cards/ changed: run `python -m medrelease.card.sync_templates`"
    )
    for name in SHIPPED.values():
        assert (shipped_dir() / name).is_file()


def test_sync_copies_and_removes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "a.md.j2").write_text("new")
    (dst / "a.md.j2").write_text("old")
    (dst / "stale.md.j2").write_text("x")
    assert sync(src, dst) == ["a.md.j2", "stale.md.j2"]
    assert template_files(dst) == {"a.md.j2": b"new"}
    assert sync(src, dst) == []


def test_package_data_is_declared():
    import tomllib

    from medrelease.card.sync_templates import repo_cards_dir as cards

    pyproject = tomllib.loads((cards().parent / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["medrelease"]
    assert "data/**/*" in globs, "the packaged cards must be in the wheel"
