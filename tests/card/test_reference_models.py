"""A `reference: true` stage appears in the card as a compared-against model: in the
evaluation tables and the reference list, never in the lineage, base_model or license check."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from card.card_fixture import REPORT, load, release_for_cards
from medrelease.card.step import card_release
from medrelease.core.console import Reporter

PEER_SHA = "fedcba9876543210fedcba9876543210fedcba98"


def test_reference_model_is_compared_not_inherited(tmp_path: Path) -> None:
    report = copy.deepcopy(REPORT)
    report["models"]["peer"] = {
        "kind": "reference", "source": "other-org/peer-med-7b", "revision": PEER_SHA,
        "content_hash": "4" * 64,
    }  # fmt: skip
    for metric in report["metrics"]:
        metric["values"]["peer"] = 0.123456
    recipe, workdir = release_for_cards(tmp_path, report=report)
    data = yaml.safe_load(recipe.read_text())
    # a Hub model absent from the offline cache with no license declared: were it treated as
    # a parent, the license check would stop the card
    data["stages"]["peer"] = {
        "hub": f"other-org/peer-med-7b@{PEER_SHA}", "reference": True,
        "description": "a peer release we compare against",
    }  # fmt: skip
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))

    card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    text = (workdir / "tiny-med" / "card" / "README.md").read_text()

    meta, body = text.split("\n---\n", 1)
    assert "other-org/peer-med-7b" not in meta  # not a base_model
    lineage = body.split("## Lineage", 1)[1].split("## Merge", 1)[0]
    assert "peer" not in lineage
    row = "| peer | other-org/peer-med-7b | fedcba987654 | a peer release we compare against |"
    assert row in body
    assert "Δ vs peer" in body and "0.123" in body
    licenses = body.split("icense", 1)[1]
    assert "| peer |" not in licenses.split("\n## ", 1)[0]
