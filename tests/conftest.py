"""Shared fixtures: tiny real models built once per test session, never downloaded."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests never reach a hub; the local Hub server tests unset this for their own calls.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# medrelease remembers file hashes and NaN-scan verdicts per user (core/filecache.py): tests
# (and the subprocesses they start) get their own cache, never the user's ~/.cache/medrelease
_CACHE = tempfile.mkdtemp(prefix="medrelease-test-cache-")
os.environ["MEDRELEASE_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def _family(root: Path, arch: str) -> dict[str, Path]:
    from medrelease.testing.tiny import TinySpec, build_tiny_model, derive_stage

    base = build_tiny_model(root / "base", TinySpec(arch=arch, seed=1))
    out = {"base": base}
    for i, name in enumerate(("sft", "dpo", "grpo"), start=1):
        out[name] = derive_stage(base, root / name, seed=100 + i, scale=0.02 * i)
    return out


@pytest.fixture(scope="session")
def tiny_families(tmp_path_factory: pytest.TempPathFactory):
    """arch -> {base, sft, dpo, grpo} folders, built lazily and shared by all tests."""
    cache: dict[str, dict[str, Path]] = {}

    def get(arch: str) -> dict[str, Path]:
        if arch not in cache:
            cache[arch] = _family(tmp_path_factory.mktemp(f"tiny-{arch}"), arch)
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def llama(tiny_families) -> dict[str, Path]:
    return tiny_families("llama")


@pytest.fixture
def isolated_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    return home


# `make test` runs on two pytest-xdist workers with `--dist loadgroup`. Each test file is one
# group (its module fixtures are built once, on one worker), and files that share something a
# second worker would duplicate or collide on are one group together:
#  - Ray: each of these starts a local Ray instance or simulated cluster (ports, /tmp/ray);
#  - the demo's stand-ins are trained once per session (tests/demo/conftest.py).
def _xdist_group(relpath: str) -> str:
    name = relpath.rsplit("/", 1)[-1]
    if (name.startswith("test_") and "_ray" in name) or relpath.startswith("tests/real/"):
        return "ray"
    if relpath.startswith("tests/demo/"):
        return "demo"
    return relpath


# tryfirst: xdist's own hook turns the marks into node-id suffixes, so ours must run before it
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    root = Path(str(config.rootpath))
    for item in items:
        rel = Path(str(item.path)).relative_to(root).as_posix()
        item.add_marker(pytest.mark.xdist_group(_xdist_group(rel)))


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Result tables one row per line, whatever width the console took when it was created
    (COLUMNS is read once, at import, by whichever test imported it first in this worker)."""
    from medrelease.core.console import out_console

    monkeypatch.setattr(out_console, "width", 200)
