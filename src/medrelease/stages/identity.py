"""What identifies a stage checkpoint for currency: file hashes for local folders, commits
for Hub ids. Cheap: file digests come from the stat-keyed hash cache.

A path is never an identity: a stage folder copied or moved elsewhere with the same bytes
is the same stage (the recipe keys of a stage enter the components without its path:
`portable_specs`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medrelease.core.hashing import HashCache, digest_of, folder_records
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.stages import AdapterStage, HubStage, LocalStage, looks_local

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def _local(loaded: LoadedRecipe, raw: str) -> Path:
    p = Path(raw).expanduser()
    return p if p.is_absolute() else loaded.base_dir / p


def stage_identities(loaded: LoadedRecipe, names: list[str], cache: HashCache) -> dict[str, Any]:
    """stage name -> a digest of its files (local, adapter) or `hub@commit` (Hub)."""
    out: dict[str, Any] = {}
    for name in names:
        spec = loaded.recipe.stages[name]
        if isinstance(spec, LocalStage):
            p = _local(loaded, spec.path)
            out[name] = digest_of(folder_records(p, cache)) if p.is_dir() else f"missing:{name}"
        elif isinstance(spec, HubStage):
            if spec.revision and COMMIT_RE.match(spec.revision):
                out[name] = f"{spec.hub}@{spec.revision}"
            else:  # a branch or tag: ask the cache / Hub which commit it is now
                from medrelease.stages.sources import locate_stage

                out[name] = f"{spec.hub}@{locate_stage(loaded, name).revision}"
        elif isinstance(spec, AdapterStage):
            p = _local(loaded, spec.adapter)
            out[name] = digest_of(folder_records(p, cache)) if p.is_dir() else spec.adapter
    return out


def portable_specs(loaded: LoadedRecipe, names: list[str]) -> dict[str, Any]:
    """stage name -> its recipe keys without where a local folder sits on this machine.

    The folder's content is the stage's identity (`stage_identities`); its path would make a
    moved or copied build (or a --stage copy elsewhere) look changed when nothing is."""
    out: dict[str, Any] = {}
    for name in names:
        spec = loaded.recipe.stages[name]
        dumped = spec.model_dump(mode="json")
        if isinstance(spec, LocalStage):
            dumped.pop("path", None)
        elif isinstance(spec, AdapterStage) and (
            looks_local(spec.adapter) or (loaded.base_dir / spec.adapter).is_dir()
        ):
            dumped.pop("adapter", None)
        out[name] = dumped
    return out
