"""What the merge depends on: the single definition used by the step, `release` and `status`."""

from __future__ import annotations

from typing import Any

from medrelease.core.hashing import HashCache
from medrelease.core.inputs import Rerun, StepInputs, referenced_files, section
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.merge_refs import merge_stage_names
from medrelease.recipe.stages import AdapterStage
from medrelease.records.manifest import MERGE
from medrelease.stages.identity import portable_specs, stage_identities

TOOLS = ("mergekit", "transformers", "torch", "peft", "safetensors", "huggingface_hub")


def needed_stages(loaded: LoadedRecipe) -> list[str]:
    """Stages the merge reads: those it names, their adapter bases, the tokenizer source."""
    recipe = loaded.recipe
    names = merge_stage_names(recipe.merge)
    if recipe.output.tokenizer_from:
        names.append(recipe.output.tokenizer_from)
    out: list[str] = []

    def add(name: str) -> None:
        spec = recipe.stages[name]
        if isinstance(spec, AdapterStage):
            add(spec.base)
        if name not in out:
            out.append(name)

    for n in names:
        add(n)
    return out


def _components(
    loaded: LoadedRecipe, paths: ReleasePaths, manifest: Manifest, cache: HashCache
) -> dict[str, Any]:
    r = loaded.recipe
    names = needed_stages(loaded)
    return {
        # recipe keys as data (status names the key that changed), stage paths left out
        "recipe": {
            "merge": r.merge,
            "output": section(loaded, "output"),
            "seed": r.seed,
            "allow_pickle": r.allow_pickle,
            "stages": portable_specs(loaded, names),
        },
        "files": referenced_files(section(loaded, "output"), loaded.base_dir, cache),
        "stages": stage_identities(loaded, names, cache),  # content, or Hub id@commit
    }


# a standalone merge never replaces merged/ unasked (it may be what a user is looking at)
INPUTS = StepInputs(MERGE, TOOLS, _components, rerun=Rerun.REFUSE, output=lambda p: p.merged)
