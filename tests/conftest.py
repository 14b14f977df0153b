"""Shared fixtures: tiny real models built once per test session (never downloaded), and the
local Hub every Hub test talks to."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import HUB_TOKEN, HUB_USER

# Tests never reach a hub; the local Hub server tests unset this for their own calls.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Evaluate in float32 on every CPU, so numbers compared across runs with other thread counts
# (local against Ray) are exactly equal; bf16 on CPUs with fast bf16 is core/compute_dtype.py's
# own tests' business.
os.environ.setdefault("MEDRELEASE_CPU_FAST_BF16", "0")
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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small real model (not a stage family) for the Hub and publish tests."""
    from medrelease.testing.tiny import TinySpec, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("pub-model") / "m", TinySpec(seed=7))


@pytest.fixture
def hub(tmp_path: Path, isolated_hf_home: Path) -> Iterator[Any]:
    """The project's local Hub (medrelease.localhub), accepting only HUB_TOKEN as HUB_USER.

    The client in this process may reach it (offline mode off) and HF_TOKEN is HUB_TOKEN, but
    huggingface_hub's default endpoint is left alone: code under test gets the URL passed in
    (`--endpoint hub.url`) or the test asks for `hub_default`. Uploads above 100 kB go through
    multipart LFS (64 kB parts), so a tiny model exercises that path too.
    """
    from huggingface_hub import constants

    from medrelease.localhub import serve

    # a MonkeyPatch of its own: a test's `monkeypatch.undo()` must not turn this off mid-test
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        mp.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        mp.setenv("HF_TOKEN", HUB_TOKEN)
        with serve(
            tmp_path / "hub", tokens={HUB_TOKEN: HUB_USER}, multipart_threshold=100_000,
            multipart_chunk=64_000,
        ) as server:  # fmt: skip
            yield server


@pytest.fixture
def hub_default(hub: Any) -> Iterator[Any]:
    """`hub`, also as huggingface_hub's default endpoint, for code that passes no `endpoint=`
    (a recipe's Hub stages, `medrelease release`)."""
    from medrelease.localhub.client import use_local_hub

    with use_local_hub(hub.url):
        yield hub


@pytest.fixture(params=["xet", "lfs"])
def transfer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Upload through Xet (hf_xet, local CAS folder) or through basic/multipart LFS."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", request.param == "lfs")
    return str(request.param)


@pytest.fixture
def lfs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every upload and download is plain HTTP (no Xet), so faults can be injected into it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


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
