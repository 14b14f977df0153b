"""Hub metadata: built with huggingface_hub's card classes and valid by its own parser."""

from __future__ import annotations

import pytest

from card.card_fixture import REPORT, load, release_for_cards
from medrelease.card import metadata as md
from medrelease.core.errors import VerificationError


def test_main_card_metadata(rendered):
    from huggingface_hub import ModelCard

    data = ModelCard(rendered["model"], ignore_metadata_errors=False).data.to_dict()
    assert data["base_model"] == ["medrelease-tests/tiny-base"]
    assert data["base_model_relation"] == "merge"
    assert data["license"] == "apache-2.0"
    assert data["language"] == ["en"]
    assert data["datasets"] == ["medrelease-tests/tiny-medqa"]
    assert data["pipeline_tag"] == "text-generation"
    assert data["library_name"] == "transformers"
    assert {"medical", "tiny"} <= set(data["tags"])
    (index,) = data["model-index"]
    assert index["name"] == "tiny-med"
    n = sum(len(r["metrics"]) for r in index["results"])
    assert n == len(REPORT["metrics"])


@pytest.mark.parametrize(("card", "library"), [("gguf", "gguf"), ("awq", "transformers")])
def test_quant_cards_point_at_the_main_repo(rendered, card, library):
    from huggingface_hub import ModelCard

    data = ModelCard(rendered[card], ignore_metadata_errors=False).data.to_dict()
    assert data["base_model"] == ["medrelease-tests/tiny-med"]
    assert data["base_model_relation"] == "quantized"
    assert data["library_name"] == library
    assert "model-index" not in data


def test_every_card_passes_validation(release, rendered):
    from medrelease.card.datasets import task_datasets

    # dataset ids come from the task definitions the gate ran (lm-eval's YAMLs)
    results = md.eval_results(REPORT, task_datasets(load(release[0]), REPORT))
    meta = md.validate_card(rendered["model"], expected_results=results, where="x")
    assert meta["license"] == "apache-2.0"
    for card in ("gguf", "awq"):
        md.validate_card(rendered[card], expected_results=None, where=card)


def test_stage_repos_add_local_parents_to_base_model(tmp_path):
    from medrelease.card.evidence import load_evidence
    from medrelease.card.step import render_cards
    from medrelease.core.paths import ReleasePaths

    recipe, workdir = release_for_cards(tmp_path, card={"stage_repos": {"dpo": "org/tiny-dpo"}})
    loaded = load(recipe)
    out = render_cards(loaded, load_evidence(ReleasePaths(workdir, "tiny-med")))
    assert out.metadata["model"]["base_model"] == ["medrelease-tests/tiny-base", "org/tiny-dpo"]


@pytest.mark.parametrize(
    ("front", "problem"),
    [
        ("license: mit\nbase_model: not a repo id\n", "base_model"),
        ("license: mit\nbase_model: a/b\nbase_model_relation: copy\n", "base_model_relation"),
        ("license: mit\nbase_model_relation: merge\n", "without base_model"),
        ("license: mit\nlanguage: [English]\n", "language"),
        ("language: [en]\n", "no license"),
        ("license: mit\nmodel-index: [{name: x, results: [{task: {}}]}]\n", "invalid"),
    ],
)
def test_validation_rejects_bad_metadata(front, problem):
    with pytest.raises(VerificationError) as info:
        md.validate_card(f"---\n{front}---\n# x\n", expected_results=None, where="README.md")
    assert problem in str(info.value)


def test_validation_rejects_a_model_index_that_does_not_match_the_report(rendered):
    results = md.eval_results(REPORT)
    tampered = rendered["model"].replace("value: 0.513333", "value: 0.6", 1)
    assert tampered != rendered["model"]
    with pytest.raises(VerificationError, match="round-trip"):
        md.validate_card(tampered, expected_results=results, where="README.md")
