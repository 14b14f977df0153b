"""Was this build made from the checkpoints its recipe declares?

`--stage NAME=SOURCE` and overlays let a recipe run on stand-ins (tiny models, CI). Such a
build must never be published under the recipe's repos as if it were the real release. The
question is asked of what the build was made from (the merge and gate records), not of the
current command line: a build made with stand-ins and published later without `--stage` is
still a stand-in build.

A stage is the declared checkpoint when its identity in the records (stages/identity.py:
content digest of a local folder, or Hub id@commit) equals the declared stage's identity, or,
for a declared Hub revision, when every file the build read has the bytes the Hub lists for
that revision (sha256 of LFS files, git blob id of small ones): a local copy of the declared
revision is the same checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.core.errors import MedreleaseError
from medrelease.core.hashing import HashCache
from medrelease.core.manifest import Manifest
from medrelease.recipe.load import load_recipe
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.stages import AdapterStage, HubStage, LocalStage
from medrelease.stages.identity import COMMIT_RE, stage_identities

BANNER_MARKER = "<!-- medrelease:provenance -->"


@dataclass(frozen=True)
class OverriddenStage:
    name: str
    declared: str  # what the recipe file says
    used: str  # what the build was made from
    reason: str

    def line(self) -> str:
        return (
            f"{self.name}: built from {self.used}, not the declared {self.declared} ({self.reason})"
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "stage": self.name,
            "declared": self.declared,
            "used": self.used,
            "why": self.reason,
        }


def describe(spec: Any) -> str:
    if isinstance(spec, HubStage):
        return f"{spec.hub}@{spec.revision or 'main'}"
    if isinstance(spec, LocalStage):
        return f"local folder {spec.path}"
    if isinstance(spec, AdapterStage):
        return f"adapter {spec.adapter} on {spec.base}"
    return str(spec)


def _used(record: dict[str, Any] | None) -> str:
    if not record:
        return "another checkpoint"
    if record.get("kind") == "hub":
        return f"{record.get('source')}@{str(record.get('revision'))[:12]}"
    return "another local folder"


def _declared(loaded: LoadedRecipe) -> LoadedRecipe | None:
    """The recipe file as written: no --stage, no overlay, no --set."""
    try:
        return load_recipe(loaded.path)
    except MedreleaseError:
        return None


def _used_identities(manifest: Manifest) -> dict[str, Any]:
    """stage name -> identity the build's merge and gate recorded (components)."""
    out: dict[str, Any] = {}
    for step, key in (("gate", "baselines"), ("merge", "stages")):
        comp = ((manifest.step(step) or {}).get("components") or {}).get(key)
        if isinstance(comp, dict):
            out.update(comp)
    return out


def matches_hub_listing(
    repo: str, revision: str, files: dict[str, Any], folder: Path | None
) -> tuple[bool, str]:
    """(same checkpoint?, why not): the build's files against the Hub's listing of `revision`.

    Every weight file the Hub lists must be there with the same sha256, and every file the
    build read must be on the Hub with the same bytes (LFS sha256, or the git blob id of a
    small file, read from `folder` when it is still on disk)."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    except Exception as exc:  # offline, unreachable, no access: not confirmed
        return (
            False,
            f"could not read the Hub listing of {repo}@{revision[:12]}: {type(exc).__name__}",
        )
    remote = {s.rfilename: s for s in info.siblings or []}
    weights = {p for p in remote if p.endswith((".safetensors", ".bin", ".pt", ".pth"))}
    missing = sorted(weights - set(files))
    if missing:
        return False, f"{missing[0]} of the Hub revision is not in the build's copy"
    for rel, rec in files.items():
        sib = remote.get(rel)
        if sib is None:
            return False, f"{rel} is not in the Hub revision"
        if sib.lfs is not None:
            if sib.lfs.sha256 != rec.get("sha256"):
                return False, f"{rel} differs from the Hub revision"
            continue
        path = folder / rel if folder is not None else None
        if path is None or not path.is_file():
            return False, f"{rel} could not be compared (the copy is gone)"
        from huggingface_hub.utils.sha import git_hash

        if sib.blob_id != git_hash(path.read_bytes()):
            return False, f"{rel} differs from the Hub revision"
    return True, ""


def overridden_stages(
    loaded: LoadedRecipe, manifest: Manifest, cache: HashCache
) -> list[OverriddenStage]:
    """The stages this build was made from that are not the recipe file's checkpoints."""
    declared = _declared(loaded)
    used = _used_identities(manifest)
    merge_stages = (manifest.step("merge") or {}).get("stages") or {}
    if declared is None:
        return [
            OverriddenStage(n, "?", "?", "the recipe file could not be read to compare")
            for n in sorted(used)
        ]
    out: list[OverriddenStage] = []
    for name, identity in sorted(used.items()):
        spec = declared.recipe.stages.get(name)
        if spec is None:
            continue  # not a stage of the recipe file: its merge/gate would not run
        try:
            want = stage_identities(declared, [name], cache)[name]
        except MedreleaseError as exc:
            want = f"unresolved: {exc}"
        if want == identity:
            continue
        rec = merge_stages.get(name)
        if isinstance(spec, HubStage) and isinstance(rec, dict) and rec.get("files"):
            revision = want.rsplit("@", 1)[-1] if "@" in want else spec.revision or "main"
            if not COMMIT_RE.match(revision):
                revision = spec.revision or "main"
            source = Path(str(rec.get("source", "")))
            folder = source if source.is_absolute() and source.is_dir() else None
            same, why = matches_hub_listing(spec.hub, revision, rec["files"], folder)
            if same:
                continue
        elif isinstance(spec, HubStage):
            why = "not the declared Hub revision (a baseline's copy is not compared file by file)"
        elif str(want).startswith("missing:"):
            why = "the declared folder does not exist here"
        else:
            why = "its files differ"
        out.append(OverriddenStage(name, describe(spec), _used(rec), why))
    return out


def banner(stages: list[OverriddenStage]) -> str:
    """The card's warning (Markdown), naming every overridden stage."""
    lines = "\n".join(f"> - **{s.name}**: {s.used}, not {s.declared} ({s.reason})" for s in stages)
    return (
        f"{BANNER_MARKER}\n"
        "> [!CAUTION]\n"
        "> **Not the declared checkpoints.** This release was built from stage checkpoints\n"
        "> that are not the ones its recipe declares (`--stage` overrides or overlays):\n"
        f"{lines}\n"
        "> Its weights, evaluation numbers and quants describe those checkpoints, not the\n"
        "> recipe's. See `manifest.json` (`publication.overridden_stages`).\n\n"
    )
