"""`release` takes the options its steps take, spelled the same, and hands them to the steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import run_cli
from test_cli_console import tiny_recipe


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from medrelease.pipeline import run as pipeline_run

    seen: list[dict[str, Any]] = []

    def fake_run_release(loaded: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return pipeline_run.ReleaseRun([], Path("manifest.json"))

    monkeypatch.setattr(pipeline_run, "run_release", fake_run_release)
    return seen


def test_step_options_reach_the_steps(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    recipe = tiny_recipe(tmp_path)
    args = ["-t", "dir://out", "--endpoint", "http://hub", "--threads", "3",
            "--allow-failed-gates", "--dry-run", "--review", "--json"]  # fmt: skip
    assert run_cli("release", recipe, *args) == 0
    (kwargs,) = calls
    opts = kwargs["options"]
    publish = opts.publish_step()
    assert publish.target == "dir://out" and publish.endpoint == "http://hub"
    assert opts.quantize().threads == 3 and opts.gate().allow_failed_gates is True
    assert publish.allow_failed_gates is True
    assert publish.dry_run is True and publish.review is True
    assert kwargs["from_step"] is None


def test_force_reruns_every_step(
    tmp_path: Path, calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tiny_recipe(tmp_path)
    assert run_cli("release", recipe, "--force", "--json") == 0
    assert calls[0]["from_step"] == "merge" and calls[0]["only"] is None
    capsys.readouterr()
    assert run_cli("release", recipe, "--force", "--only", "gate") == 2  # ambiguous: refused
    assert "--force runs every step" in capsys.readouterr().err
    assert len(calls) == 1
