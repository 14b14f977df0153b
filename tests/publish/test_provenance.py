"""Provenance: is a build made from the checkpoints its recipe declares?

A --stage copy whose files are the bytes the Hub lists for the declared revision is the same
checkpoint; any other content in its place is named, with the reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from helpers import HUB_TOKEN


def _build_from(loaded: Any, tmp: Path, used: dict[str, Path]) -> Any:
    """The records a merge of `used` would leave (identities and files read)."""
    from medrelease.core.hashing import HashCache, folder_records
    from medrelease.core.manifest import Manifest
    from medrelease.stages.identity import stage_identities

    cache = HashCache(None)
    data = {
        "steps": {
            "merge": {
                "status": "done",
                "components": {"stages": stage_identities(loaded, list(used), cache)},
                "stages": {
                    n: {"kind": "local", "source": str(p), "files": folder_records(p, cache)}
                    for n, p in used.items()
                },
            }
        }
    }
    return Manifest(tmp / "manifest.json", data)


def test_a_copy_of_the_declared_hub_revision_is_the_declared_checkpoint(tmp_path, hub, tiny_model):
    from huggingface_hub import HfApi

    from medrelease.core.hashing import HashCache
    from medrelease.localhub.client import use_local_hub
    from medrelease.recipe.load import load_recipe
    from medrelease.stages.provenance import banner, overridden_stages

    with use_local_hub(hub.url):
        api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
        api.create_repo("org/sft")
        commit = api.upload_folder(folder_path=str(tiny_model), repo_id="org/sft").oid
        declared = {"sft": f"org/sft@{commit}", "grpo": str(tiny_model)}
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(
            yaml.safe_dump(
                {
                    "release": {
                        "name": "p",
                        "version": "1.0.0",
                        "repo": "org/p",
                        "license": "apache-2.0",
                    },
                    "stages": declared,
                    "merge": {
                        "merge_method": "linear",
                        "models": [
                            {"model": "sft", "parameters": {"weight": 0.5}},
                            {"model": "grpo", "parameters": {"weight": 0.5}},
                        ],
                    },
                }
            )
        )
        copy = tmp_path / "sft-copy"
        shutil.copytree(tiny_model, copy)
        loaded = load_recipe(recipe, overrides={"sft": str(copy)})
        cache = HashCache(None)
        # the same bytes as the Hub lists for the declared commit: the same checkpoint
        build = _build_from(loaded, tmp_path, {"sft": copy, "grpo": tiny_model})
        assert overridden_stages(loaded, build, cache) == []

        # a stand-in in its place: named, with what differs
        weights = next(copy.glob("*.safetensors"))
        weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
        build = _build_from(loaded, tmp_path, {"sft": copy, "grpo": tiny_model})
        found = overridden_stages(loaded, build, cache)
        assert [s.name for s in found] == ["sft"]
        assert found[0].declared == f"org/sft@{commit}"
        assert weights.name in found[0].reason and "differs" in found[0].reason
        assert "**sft**" in banner(found)

        # a local stage given another folder (--stage grpo=...) with other content
        other = tmp_path / "grpo-standin"
        shutil.copytree(copy, other)
        loaded = load_recipe(recipe, overrides={"grpo": str(other)})
        build = _build_from(loaded, tmp_path, {"grpo": other})
        found = overridden_stages(loaded, build, cache)
        assert [(s.name, s.reason) for s in found] == [("grpo", "its files differ")]


def test_a_hub_listing_that_cannot_be_read_is_not_a_confirmation(tmp_path, tiny_model):
    """Offline (tests run with HF_HUB_OFFLINE=1): a copy cannot be confirmed, so it counts
    as overridden, saying why."""
    from medrelease.stages.provenance import matches_hub_listing

    same, why = matches_hub_listing("org/sft", "a" * 40, {"config.json": {"sha256": "x"}}, None)
    assert not same and "could not read the Hub listing" in why
