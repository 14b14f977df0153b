"""The published manifest.json carries no path of the publisher's machine."""

from __future__ import annotations

import json
from pathlib import Path

from medrelease.core.manifest import Manifest
from medrelease.publish.checks import GateVerdict
from medrelease.publish.plan import published_manifest
from medrelease.records.public import LOCAL, public_manifest_data

DATA = {
    "schema_version": 1,
    "recipe": {
        "path": "/home/alice/releases/med/recipe.yaml",
        "sha256": "a" * 64,
        "overrides": {"base": "/tmp/standins/base", "merge.seed": "7", "sft": "org/sft@main"},
    },
    "steps": {
        "merge": {
            "status": "done",
            "stages": {
                "base": {"kind": "hub", "source": "org/base", "revision": "0" * 40},
                "sft": {"kind": "local", "source": "/tmp/standins/sft",
                        "files": {"model.safetensors": {"sha256": "b" * 64, "size": 1}}},
                "dpo": {"kind": "local", "source": "./dpo", "files": {}},
                "win": {"kind": "local", "source": "C:\\\\models\\\\win", "files": {}},
            },
        },
        "gate": {"status": "done", "models": {"sft": "sha256:" + "c" * 64}},
    },
}  # fmt: skip


def test_stage_paths_become_local_checkpoint_hub_ids_and_relative_paths_stay():
    out = public_manifest_data(DATA)
    stages = out["steps"]["merge"]["stages"]
    assert stages["sft"]["source"] == LOCAL
    assert stages["sft"]["files"] == DATA["steps"]["merge"]["stages"]["sft"]["files"]
    assert stages["win"]["source"] == LOCAL
    assert stages["dpo"]["source"] == "./dpo"  # as the recipe wrote it, relative
    assert stages["base"] == DATA["steps"]["merge"]["stages"]["base"]  # Hub id + revision
    assert out["recipe"]["path"] == "recipe.yaml"
    assert out["recipe"]["overrides"] == {
        "base": LOCAL, "merge.seed": "7", "sft": "org/sft@main",
    }  # fmt: skip
    assert DATA["recipe"]["path"].startswith("/home/"), "the input is not changed"


def test_the_published_bytes_hold_no_local_path(tmp_path: Path):
    data = json.loads(json.dumps(DATA))
    data["steps"]["merge"]["stages"]["sft"]["source"] = str(tmp_path / "standins" / "sft")
    text = published_manifest(
        Manifest(tmp_path / "manifest.json", data), {"allow_failed_gates": False},
        GateVerdict(passed=True),
    ).decode()  # fmt: skip
    assert str(tmp_path) not in text
    assert "/tmp/" not in text and "/home/" not in text
    assert json.loads(text)["steps"]["merge"]["stages"]["sft"]["source"] == LOCAL
