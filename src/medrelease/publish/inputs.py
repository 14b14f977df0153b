"""What publishing depends on: the single definition used by the step, `release` and
`status`.

Besides the recipe and the upstream outputs, the destination (`--target`, `--endpoint`) and
what it holds now: a release published to one place is not published to another, and a
destination whose repo, tag or export folder no longer holds this release is not current.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medrelease.core.hashing import HashCache
from medrelease.core.inputs import StepInputs, outputs_digest, section
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.manifest import CARD, GATE, MERGE, PUBLISH, QUANTIZE

TOOLS = ("huggingface_hub", "hf_xet")


def repo_ids(loaded: LoadedRecipe) -> list[str]:
    """The repos this recipe publishes to (a quant repo only where quantize makes its kind)."""
    rel, cfg, q = loaded.recipe.release, loaded.recipe.publish, loaded.recipe.quantize

    def render(template: str) -> str:
        return cfg.render(template, repo=rel.repo, name=rel.name, version=rel.version)

    repos = [rel.repo]
    if q is not None and q.gguf is not None:
        repos.append(render(cfg.gguf_repo))
    if q is not None and q.awq is not None:
        repos.append(render(cfg.awq_repo))
    return repos


def _components(
    loaded: LoadedRecipe, paths: ReleasePaths, manifest: Manifest, cache: HashCache
) -> dict[str, Any]:
    return {
        "recipe": {"publish": section(loaded, "publish"), "release": section(loaded, "release")},
        "upstream": {
            s.name: outputs_digest(manifest, s.name) for s in (MERGE, GATE, QUANTIZE, CARD)
        },
    }


def _destination(
    loaded: LoadedRecipe,
    paths: ReleasePaths,
    manifest: Manifest,
    cache: HashCache,
    options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """`destination` and `remote`. With options (release, publish): where this run publishes.
    Without (status): where the last publish went; nothing is queried before a first one."""
    from medrelease.publish.target import destination, remote_state

    if options is None:
        recorded = ((manifest.step("publish") or {}).get("components") or {}).get("destination")
        if not isinstance(recorded, dict):
            return {"destination": None, "remote": None}
        dest = recorded
    else:
        dest = destination(options.get("target"), options.get("endpoint"))
    cfg, rel = loaded.recipe.publish, loaded.recipe.release
    tag = cfg.render(cfg.tag, repo=rel.repo, name=rel.name, version=rel.version)
    return {"destination": dest, "remote": remote_state(dest, repo_ids(loaded), tag, cache)}


# standalone: always runs, and compares with the remote itself (nothing changed: no commit)
INPUTS = StepInputs(PUBLISH, TOOLS, _components, outputs_on_hub=True, destination=_destination)
