"""The Hub names a card shows: repo ids and the release tag, stage ids, and where links point.

The repo ids and the tag are rendered by `PublishConfig.render` from the recipe's `publish:`
patterns, the one definition the publish step uses too, so a card never names a repo or a
tag that publish would not create.
"""

from __future__ import annotations

import os

from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.stages import HubStage

PUBLIC_HUB = "https://huggingface.co"


def _render(loaded: LoadedRecipe, template: str) -> str:
    rel = loaded.recipe.release
    return loaded.recipe.publish.render(template, repo=rel.repo, name=rel.name, version=rel.version)


def repo_ids(loaded: LoadedRecipe) -> dict[str, str]:
    """Card name (model | gguf | awq) -> the Hub repo it is published to."""
    pub = loaded.recipe.publish
    return {
        "model": loaded.recipe.release.repo,
        "gguf": _render(loaded, pub.gguf_repo),
        "awq": _render(loaded, pub.awq_repo),
    }


def release_tag(loaded: LoadedRecipe) -> str:
    return _render(loaded, loaded.recipe.publish.tag)


def stage_hub_id(loaded: LoadedRecipe, name: str) -> str | None:
    """A stage's Hub repo: `card.stage_repos` for a local stage, its own id for a Hub stage."""
    spec = loaded.recipe.stages[name]
    card = loaded.recipe.card
    if card and name in card.stage_repos:
        return card.stage_repos[name]
    if isinstance(spec, HubStage):
        return spec.hub
    return None


def hub_url() -> str:
    """The Hub the links point at: HF_ENDPOINT when set (as publish reads it), else the public
    Hub. Part of the card's inputs, so publishing elsewhere re-renders the links."""
    return (os.environ.get("HF_ENDPOINT") or PUBLIC_HUB).rstrip("/")
