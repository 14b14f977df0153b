"""Small helpers for tests: write recipes, run the CLI in-process, compare tensors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

# The one token the local Hub (tests/conftest.py `hub`) accepts, as user HUB_USER; every test
# that talks to a local Hub uses it, so a test that means a *wrong* token says so plainly.
HUB_TOKEN = "hf_LocalHubTestToken0123456789abcdefg"
HUB_USER = "alice"


def free_port() -> int:
    """A loopback port nothing listens on (for an unreachable cluster address)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RAY_OBJECT_STORE = 100 * 2**20  # Ray's minimum is ~75 MB; unit results are small


@contextmanager
def two_node_ray_cluster() -> Iterator[Any]:
    """Two Ray nodes (1 CPU each) on loopback (ray.cluster_utils), shut down whatever happens."""
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "object_store_memory": RAY_OBJECT_STORE,
            "include_dashboard": False,
        },
    )
    try:
        c.add_node(num_cpus=1, object_store_memory=RAY_OBJECT_STORE)
        c.wait_for_nodes()
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


def recipe_data(stages: dict[str, Any], merge: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A recipe's data: `name` names the release, other keyword arguments are sections."""
    return {
        "release": {
            "name": extra.pop("name", "tiny-release"),
            "version": "0.1.0",
            "repo": "medrelease-tests/tiny-release",
            "license": "apache-2.0",
        },
        "stages": {k: str(v) if isinstance(v, Path) else v for k, v in stages.items()},
        "merge": merge,
        **extra,
    }


def write_recipe(path: Path, stages: dict[str, Any], merge: dict[str, Any], **extra: Any) -> Path:
    path.write_text(yaml.safe_dump(recipe_data(stages, merge, **extra), sort_keys=False))
    return path


def run_cli(*args: str) -> int:
    from medrelease.cli import main

    return main([str(a) for a in args])


def load_tensors(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    tensors: dict[str, Any] = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def assert_bitwise_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    import torch

    assert sorted(a) == sorted(b), f"tensor names differ: {set(a) ^ set(b)}"
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), f"{name} differs"


# A 50/50 linear merge of the tiny "sft" and "grpo" stages: the recipe most failure tests use.
LINEAR = {
    "merge_method": "linear",
    "models": [
        {"model": "sft", "parameters": {"weight": 0.5}},
        {"model": "grpo", "parameters": {"weight": 0.5}},
    ],
    "dtype": "float32",
}
