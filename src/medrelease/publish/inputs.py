"""What publishing depends on: the single definition used by the step, `release` and
`status`."""

from __future__ import annotations

from typing import Any

from medrelease.core.hashing import HashCache, digest_of
from medrelease.core.inputs import StepInputs, outputs_digest, section
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.recipe.load import LoadedRecipe
from medrelease.records.manifest import CARD, GATE, MERGE, PUBLISH, QUANTIZE

TOOLS = ("huggingface_hub", "hf_xet")


def _components(
    loaded: LoadedRecipe, paths: ReleasePaths, manifest: Manifest, cache: HashCache
) -> dict[str, Any]:
    return {
        "recipe": digest_of(
            {"publish": section(loaded, "publish"), "release": section(loaded, "release")}
        ),
        "upstream": digest_of(
            {s.name: outputs_digest(manifest, s.name) for s in (MERGE, GATE, QUANTIZE, CARD)}
        ),
    }


# standalone: always runs, and compares with the remote itself (nothing changed: no commit)
INPUTS = StepInputs(PUBLISH, TOOLS, _components, outputs_on_hub=True)
