"""Get a usable local model folder for any stage (used by merge, gate, quantize, card).

Hub stages are downloaded at their pinned commit; adapter stages are materialized with peft
(cached under <release>/stages/). Returns the ResolvedStage with `path` ready to load.
"""

from __future__ import annotations

from medrelease.core.console import Reporter
from medrelease.core.hashing import HashCache
from medrelease.core.paths import ReleasePaths
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.stages import checks
from medrelease.stages.sources import ResolvedStage, fetch_weights, locate_stage


def stage_folder(
    loaded: LoadedRecipe,
    name: str,
    paths: ReleasePaths,
    *,
    hashes: HashCache | None = None,
    reporter: Reporter | None = None,
    _seen: dict[str, ResolvedStage] | None = None,
) -> ResolvedStage:
    reporter = reporter or Reporter(quiet=True)
    seen = _seen if _seen is not None else {}
    if name in seen:
        return seen[name]
    stage = locate_stage(loaded, name)
    ensure_ready(loaded, stage, paths, hashes=hashes, reporter=reporter, seen=seen)
    seen[name] = stage
    return stage


def ensure_ready(
    loaded: LoadedRecipe,
    stage: ResolvedStage,
    paths: ReleasePaths,
    *,
    hashes: HashCache | None,
    reporter: Reporter,
    seen: dict[str, ResolvedStage],
) -> None:
    """Download weights / materialize the adapter so `stage.path` is a full model folder."""
    if stage.kind == "hub" and not stage.weights_ready:
        reporter.info(f"downloading {stage.source}@{stage.revision} ...")
        fetch_weights(stage, reporter)
        checks.check_weights(stage)
    elif stage.kind == "adapter" and stage.adapter is not None and stage.base is not None:
        from medrelease.stages.adapters import materialize_adapter

        base = stage_folder(loaded, stage.base, paths, hashes=hashes, reporter=reporter, _seen=seen)
        reporter.info(f"materializing adapter stage {stage.name!r} on {stage.base!r} with peft")
        stage.path = materialize_adapter(stage, base, paths.stages, hashes or HashCache(None))
        stage.weights_ready = True
