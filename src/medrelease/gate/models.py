"""The models a gate evaluates: the merged candidate and the baseline stages
(stages of the release, or `reference: true` stages: other models to compare against)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medrelease.core.console import Reporter
from medrelease.core.errors import InputError, RecipeError
from medrelease.core.hashing import HashCache, digest_of, folder_records
from medrelease.core.paths import ReleasePaths
from medrelease.core.suggest import did_you_mean
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.gate_report import ModelEntry

CANDIDATE = "merged"


@dataclass
class GateModel:
    name: str
    path: Path
    content_hash: str
    record: ModelEntry  # its `models.<name>` entry in the report


def model_content_hash(folder: Path, hashes: HashCache) -> str:
    """Digest of every file of a model folder (weights, config, tokenizer, templates)."""
    return "sha256:" + digest_of(folder_records(folder, hashes))


def candidate_model(paths: ReleasePaths, hashes: HashCache) -> GateModel:
    if not (paths.merged / "config.json").is_file():
        raise InputError(
            f"no merged model in {paths.merged}",
            hint="run `medrelease merge RECIPE` first (same --workdir)",
        )
    h = model_content_hash(paths.merged, hashes)
    return GateModel(
        CANDIDATE, paths.merged, h, {"kind": "merged", "path": "merged", "content_hash": h}
    )


def baseline_models(
    loaded: LoadedRecipe, paths: ReleasePaths, hashes: HashCache, reporter: Reporter
) -> list[GateModel]:
    from medrelease.stages.folders import stage_folder

    gates = loaded.recipe.gates
    assert gates is not None
    out: list[GateModel] = []
    for i, name in enumerate(gates.baselines):
        if name not in loaded.recipe.stages:
            raise RecipeError(
                f"baseline {name!r} is not a stage{did_you_mean(name, set(loaded.recipe.stages))}",
                where=loaded.where(("gates", "baselines", i)),
                hint=(
                    "baselines are stage names from `stages:`; to compare with another model, "
                    "declare it there with `reference: true`"
                ),
            )
        if name == CANDIDATE:
            raise RecipeError(f"a stage named {CANDIDATE!r} clashes with the merged candidate")
        stage = stage_folder(loaded, name, paths, hashes=hashes, reporter=reporter)
        h = model_content_hash(stage.path, hashes)
        kind = "reference" if loaded.recipe.stages[name].reference else "stage"
        rec: ModelEntry = {"kind": kind, "source": stage.source, "content_hash": h}
        if stage.revision:
            rec["revision"] = stage.revision
        out.append(GateModel(name, stage.path, h, rec))
    return out
