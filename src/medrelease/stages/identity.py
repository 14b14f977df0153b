"""What identifies a stage checkpoint for currency: file hashes for local folders, commits
for Hub ids. Cheap: file digests come from the stat-keyed hash cache."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medrelease.core.hashing import HashCache, digest_of, folder_records
from medrelease.recipe.load import LoadedRecipe
from medrelease.recipe.stages import AdapterStage, HubStage, LocalStage

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
