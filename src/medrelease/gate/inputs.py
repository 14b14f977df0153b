"""What the gate depends on: the single definition used by the step, `release` and `status`."""

from __future__ import annotations

from typing import Any

from medrelease.core.hashing import HashCache
from medrelease.core.inputs import StepInputs, outputs_digest, referenced_files, section
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.manifest import GATE
from medrelease.stages.identity import stage_identities

TOOLS = ("lm_eval", "transformers", "torch", "datasets", "nltk")


def _components(
    loaded: LoadedRecipe, paths: ReleasePaths, manifest: Manifest, cache: HashCache
) -> dict[str, Any]:
    gates = section(loaded, "gates") or {}
    baselines = [b for b in gates.get("baselines", []) if b in loaded.recipe.stages]
    return {
        "recipe": {"gates": gates},  # keyed as in the recipe: status names `gates.<key>`
        "files": referenced_files(gates, loaded.base_dir, cache),
        "candidate": outputs_digest(manifest, "merge"),
        "baselines": stage_identities(loaded, baselines, cache),  # content, or Hub id@commit
    }


# a standalone gate always runs: its evaluations are cached (gate/cache.py)
INPUTS = StepInputs(GATE, TOOLS, _components)
