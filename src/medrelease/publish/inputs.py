"""What publishing depends on: the single definition used by the step, `release` and
`status`."""

from __future__ import annotations

from typing import Any

from medrelease.core.hashing import HashCache, digest_of
from medrelease.core.inputs import StepInputs, outputs_digest, section
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.recipe.load import LoadedRecipe

TOOLS = ("huggingface_hub", "hf_xet")


def _components(
    loaded: LoadedRecipe, paths: ReleasePaths, manifest: Manifest, cache: HashCache
) -> dict[str, Any]:
    return {
        "recipe": digest_of(
            {"publish": section(loaded, "publish"), "release": section(loaded, "release")}
        ),
        "upstream": digest_of(
            {s: outputs_digest(manifest, s) for s in ("merge", "gate", "quantize", "card")}
        ),
    }


INPUTS = StepInputs("publish", TOOLS, _components)
