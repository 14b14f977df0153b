"""A sweep trial's merge reuses what the output settings made of an earlier trial's identical
tokenizer and config files; the folder is the one they would make anew, byte for byte."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sweep.sweephelpers import write_sweep_recipe

pytestmark = pytest.mark.slow  # three merges with mergekit


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_reused_output_settings_equal_those_made_anew(
    tmp_path: Path, llama: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import medrelease.merge.trial as trial
    from medrelease.core.console import Reporter
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.sweep.space import apply_params

    recipe = write_sweep_recipe(tmp_path, llama)
    loaded = load_recipe(
        recipe, sets=["output.generation_config={temperature: 0.3, do_sample: true}"]
    )
    folders = trial.check_trial_inputs(loaded, tmp_path / "build", Reporter(quiet=True))
    made: list[Path] = []
    real = trial.finalize_output
    monkeypatch.setattr(
        trial, "finalize_output", lambda out, **kw: made.append(out) or real(out, **kw)
    )
    monkeypatch.setattr(trial, "FINALIZED", trial.FinalizedFiles())

    def merged(weights: tuple[float, float], out: Path) -> dict[str, bytes]:
        params = {
            "models.0.parameters.weight": weights[0],
            "models.1.parameters.weight": weights[1],
        }
        merge = apply_params(loaded.recipe.merge, params)
        once = replace(loaded, recipe=loaded.recipe.model_copy(update={"merge": merge}))
        trial.merge_trial(once, folders, out)
        return _files(out)

    first = merged((0.3, 0.7), tmp_path / "a")
    reused = merged((0.9, 0.2), tmp_path / "b")
    assert made == [tmp_path / "a"]  # the second trial's settings came from the first's
    monkeypatch.setattr(trial, "FINALIZED", trial.FinalizedFiles())
    anew = merged((0.9, 0.2), tmp_path / "c")
    assert made == [tmp_path / "a", tmp_path / "c"]
    assert reused == anew  # every file, weights and settings, byte for byte
    assert "README.md" not in reused  # mergekit's card removed, as finalize_output does
    assert b"0.3" in reused["generation_config.json"]
    assert first["mergekit_config.yml"] != reused["mergekit_config.yml"]  # each trial's own
    assert {n: b for n, b in first.items() if not n.endswith((".safetensors", ".yml"))} == {
        n: b for n, b in reused.items() if not n.endswith((".safetensors", ".yml"))
    }
