"""A workdir that does not exist, or cannot be written: one clear message, nothing created.

`status` reads a build and writes nothing, so it works on a read-only build and a mistyped
workdir creates no folder; a step that must write gets exit 7 with the fix, not a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import LINEAR, run_cli


def recipe(tmp_path: Path) -> Path:
    data = {
        "release": {"name": "wd", "version": "0.1.0", "repo": "t/wd", "license": "apache-2.0"},
        "stages": {"sft": "./stages/sft", "grpo": "./stages/grpo"},
        "merge": LINEAR,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_status_on_a_missing_workdir_says_so_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "buidl"  # a typo
    assert run_cli("status", recipe(tmp_path), "--workdir", missing) == 0
    out = capsys.readouterr()
    assert "does not exist" in out.err and "check --workdir" in out.err
    assert not missing.exists()
    assert run_cli("status", recipe(tmp_path), "--workdir", missing, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert "does not exist" in data["notes"][0]
    assert {s["state"] for s in data["steps"]} <= {"pending", "not configured"}
    assert not missing.exists()


@pytest.mark.parametrize("kind", ["file", "proc"])
def test_a_workdir_that_cannot_be_written_is_exit_7_with_the_fix(tmp_path, capsys, kind):
    if kind == "file":
        workdir = tmp_path / "a-file"
        workdir.write_text("not a folder\n")
    else:
        workdir = Path("/proc/medrelease-cannot-write-here")
    assert run_cli("release", recipe(tmp_path), "--workdir", workdir, "--only", "merge") == 7
    err = capsys.readouterr().err
    assert "cannot write the release folder" in err and "writable --workdir" in err
    assert "Traceback" not in err
    if kind == "file":
        assert workdir.read_text() == "not a folder\n"
