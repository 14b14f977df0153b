"""The card step on the manifest a real merge wrote (tiny llama stages, mergekit on CPU)."""

from __future__ import annotations

import copy
import json

import pytest

from card.card_fixture import REPORT
from helpers import write_recipe

pytestmark = pytest.mark.slow


def test_card_reads_the_real_merge_record(tmp_path, llama):
    from huggingface_hub import ModelCard

    from medrelease.card.step import card_release
    from medrelease.core.console import Reporter
    from medrelease.merge.step import merge_release
    from medrelease.pipeline.recipes import load_recipe

    recipe = write_recipe(
        tmp_path / "recipe.yaml",
        {
            "base": llama["base"],
            "sft": {"path": str(llama["sft"]), "parent": "base"},
            "dpo": {"path": str(llama["dpo"]), "parent": "sft"},
        },
        {
            "merge_method": "linear",
            "models": [
                {"model": "sft", "parameters": {"weight": 0.5}},
                {"model": "dpo", "parameters": {"weight": 0.5}},
            ],
            "dtype": "float32",
        },
        name="tiny-real",
        card={
            "stage_licenses": {"base": "apache-2.0", "sft": "apache-2.0", "dpo": "mit"},
            "stage_repos": {"base": "org/tiny-base"},  # local stand-in of a Hub model
        },
        output={"generation_config": {"do_sample": True, "temperature": 0.7}},
    )
    loaded = load_recipe(recipe)
    workdir = tmp_path / "build"
    merge_release(loaded, workdir=workdir, reporter=Reporter(quiet=True))
    report = copy.deepcopy(REPORT)
    (workdir / "tiny-real" / "gates").mkdir()
    (workdir / "tiny-real" / "gates" / "report.json").write_text(json.dumps(report))

    result = card_release(loaded, workdir=workdir, reporter=Reporter(quiet=True))
    text = (workdir / "tiny-real" / "card" / "README.md").read_text()
    data = ModelCard(text).data.to_dict()
    # local stages have no Hub id: only the one named in card.stage_repos is a base_model
    assert data["base_model"] == ["org/tiny-base"]
    assert data["base_model_relation"] == "merge"
    assert "merge (linear): sft + dpo  ->  medrelease-tests/tiny-release" in text
    assert "| `temperature` | `0.7` |" in text  # read from the merge record, not the recipe
    assert "└── sft  (local checkpoint)" in text
    assert list(result.record["cards"]) == ["model"]
    manifest = json.loads((workdir / "tiny-real" / "manifest.json").read_text())
    assert set(manifest["steps"]) == {"merge", "card"}
