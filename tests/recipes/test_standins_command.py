"""`python -m medrelease.testing.standins RECIPE OUT` prints only flags that point at something
it wrote: no `--set gates.data_dir=...` when the recipe's presets need no data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medrelease.testing import standins


def recipe_with(tmp_path: Path, presets: list[str]) -> Path:
    data = {
        "release": {"name": "tiny", "version": "0.1.0", "repo": "t/tiny", "license": "mit"},
        "stages": {"a": "org/a", "b": "org/b"},
        "merge": {"merge_method": "linear", "models": [{"model": "a"}, {"model": "b"}],
                  "parameters": {"weight": 0.5}},
        "gates": {"baselines": ["a"], "tasks": [{"preset": p} for p in presets],
                  "rules": [{"metric": "medical_safety/violation_rate", "max": 0.5}]},
    }  # fmt: skip
    path = tmp_path / "r.yaml"
    path.write_text("# standin-arch: llama\n" + yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("presets", "writes_data"), [(["medical_safety"], False), (["medical_safety", "medqa"], True)]
)
def test_data_dir_flag_only_for_data_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    presets: list[str],
    writes_data: bool,
) -> None:
    # the stand-in models themselves are not what this test is about: skip building them
    monkeypatch.setattr(
        standins, "standin_overrides", lambda recipe, family: {"a": family.root / "base"}
    )
    out = tmp_path / "standins"
    assert standins.main([str(recipe_with(tmp_path, presets)), str(out)]) == 0
    printed = capsys.readouterr().out
    data = out / "eval-data"
    assert ("--set" in printed and f"gates.data_dir={data}" in printed) is writes_data, printed
    assert data.is_dir() is writes_data
    if writes_data:
        assert (data / "medqa" / "test.jsonl").is_file()
