"""Compare the release license with every parent's, before a card claims anything.

A parent's license is read from its checkpoint's README metadata (the `license:` key of the
YAML front matter, as the Hub shows it); the recipe may declare it where the checkpoint says
nothing (`card.stage_licenses`). The policy is deliberately conservative, because a card is
a legal statement: a parent passes when its license equals the release license or is one of
the permissive licenses any release may build on (MIT, BSD, CC0, Unlicense, ...). Anything
else, or a parent whose license nobody states, stops the card unless the recipe sets
`card.license_override.reason`, and the card then states that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.card.errors import LicenseConflict
from medrelease.core.errors import RecipeError
from medrelease.core.suggest import did_you_mean
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.stages import AdapterStage, HubStage, LocalStage, looks_local, split_revision

# licenses whose terms allow a derivative under any license (notice kept)
ANY_RELEASE_MAY_BUILD_ON = frozenset(
    {"mit", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "cc0-1.0", "unlicense",
     "wtfpl", "isc", "zlib", "bsl-1.0", "postgresql", "ncsa"}
)  # fmt: skip
# ids that name no license at all
UNKNOWN = frozenset({"", "other", "unknown", "none"})


@dataclass
class ParentLicense:
    stage: str
    license: str | None
    source: str  # where the license was read: "checkpoint README", "recipe", "not stated"
    compatible: bool
    note: str
    verified: bool = True  # False: a stand-in (--stage) whose real parent could not be read

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "license": self.license,
            "source": self.source,
            "compatible": self.compatible,
            "note": self.note,
            "verified": self.verified,
        }


def parent_stages(loaded: LoadedRecipe, merge_inputs: list[str]) -> list[str]:
    """Every stage the merged weights descend from, root first, without duplicates."""
    out: list[str] = []
    for name in merge_inputs:
        for stage in loaded.recipe.stage_lineage(name):
            if stage not in out:
                out.append(stage)
    return out


def check_licenses(
    loaded: LoadedRecipe, parents: list[str], stage_records: dict[str, Any]
) -> tuple[list[ParentLicense], str | None]:
    """(per-parent verdicts, override reason or None); raises LicenseConflict when stuck."""
    card = loaded.recipe.card
    declared = dict(card.stage_licenses) if card else {}
    stages = set(loaded.recipe.stages)
    for name in declared:
        if name not in stages:
            raise RecipeError(
                f"card.stage_licenses: {name!r} is not a stage" + did_you_mean(name, stages),
                where=loaded.where(("card", "stage_licenses", name)),
            )
    release = loaded.recipe.release.license.strip().lower()
    verdicts: list[ParentLicense] = []
    for stage in parents:
        if stage in loaded.overrides:
            # a stand-in (--stage NAME=...) is not the parent the card names: read the license
            # of the checkpoint the recipe declares instead
            found = _declared_source_license(loaded, stage)
            source = "recipe's checkpoint (run with a --stage stand-in)"
        else:
            found = read_checkpoint_license(loaded, stage, stage_records.get(stage) or {})
            source = "checkpoint README"
        lic = found
        if stage in declared:
            said = declared[stage].strip().lower()
            if found is not None and found != said:
                raise LicenseConflict(
                    f"stage {stage!r}: the recipe declares license {said!r} but the checkpoint's "
                    f"README says {found!r}",
                    where=loaded.where(("card", "stage_licenses", stage)),
                    hint="remove the declaration or correct it; the checkpoint's metadata wins",
                )
            lic, source = said, "recipe (card.stage_licenses)"
        if lic is None and stage in loaded.overrides:
            verdicts.append(
                ParentLicense(
                    stage,
                    None,
                    "not verified: --stage stand-in",
                    True,
                    "the real parent's license could not be read in this run",
                    verified=False,
                )
            )
            continue
        if lic is None:
            verdicts.append(ParentLicense(stage, None, "not stated", False, "license unknown"))
            continue
        ok, note = compatible(lic, release)
        verdicts.append(ParentLicense(stage, lic, source, ok, note))
    bad = [v for v in verdicts if not v.compatible]
    override = card.license_override.reason if card and card.license_override else None
    if bad and override is None:
        first = bad[0]
        what = (
            f"stage {first.stage!r} states no license"
            if first.license is None
            else f"stage {first.stage!r} is licensed {first.license!r}, which does not allow "
            f"a {release!r} release ({first.note})"
        )
        more = f" (and {len(bad) - 1} more parent(s))" if len(bad) > 1 else ""
        raise LicenseConflict(
            what + more,
            where=str(loaded.path),
            hint="declare the parent's license in card.stage_licenses, change release.license, "
            "or set card.license_override.reason (the card will state it)",
        )
    return verdicts, override


def compatible(parent: str, release: str) -> tuple[bool, str]:
    parent = parent.strip().lower()
    if parent in UNKNOWN:
        return False, f"license {parent or 'empty'!r} names no terms"
    if parent == release:
        return True, "same license"
    if parent in ANY_RELEASE_MAY_BUILD_ON:
        return True, "permissive parent"
    return False, f"{parent} terms differ from {release}"


def read_checkpoint_license(loaded: LoadedRecipe, stage: str, record: dict[str, Any]) -> str | None:
    """The `license:` of the stage's README metadata, when the checkpoint has one."""
    spec = loaded.recipe.stages[stage]
    if isinstance(spec, LocalStage):
        return _readme_license(_local(loaded, spec.path) / "README.md")
    if isinstance(spec, AdapterStage):
        if looks_local(spec.adapter) or (loaded.base_dir / spec.adapter).is_dir():
            return _readme_license(_local(loaded, spec.adapter) / "README.md")
        repo, rev = split_revision(spec.adapter)
        return _hub_license(repo, rev)
    assert isinstance(spec, HubStage)
    return _hub_license(spec.hub, record.get("revision") or spec.revision)


def _declared_source_license(loaded: LoadedRecipe, stage: str) -> str | None:
    """License of the stage as the recipe file declares it (before --stage overrides)."""
    from medrelease.recipe.stages import normalize_stage

    stages = loaded.source.data.get("stages") if isinstance(loaded.source.data, dict) else None
    raw = normalize_stage((stages or {}).get(stage))
    if not isinstance(raw, dict):
        return None
    if raw.get("kind") == "hub" and isinstance(raw.get("hub"), str):
        return _hub_license(raw["hub"], raw.get("revision"))
    ref = raw.get("path") if raw.get("kind") == "local" else raw.get("adapter")
    if not isinstance(ref, str):
        return None
    if raw.get("kind") == "adapter" and not (looks_local(ref) or (loaded.base_dir / ref).is_dir()):
        repo, rev = split_revision(ref)
        return _hub_license(repo, rev)
    return _readme_license(_local(loaded, ref) / "README.md")


def _normalize(lic: Any) -> str | None:
    if isinstance(lic, list):
        lic = lic[0] if lic else None
    return str(lic).strip().lower() if lic else None


def _readme_license(readme: Path) -> str | None:
    if not readme.is_file():
        return None
    from huggingface_hub import metadata_load

    try:
        meta = metadata_load(readme) or {}
    except (ValueError, OSError):  # malformed front matter: treat as not stated
        return None
    return _normalize(meta.get("license"))


def _local(loaded: LoadedRecipe, raw: str) -> Path:
    p = Path(raw.removeprefix("file:")).expanduser()
    return p if p.is_absolute() else loaded.base_dir / p


def _hub_license(repo: str, revision: str | None) -> str | None:
    """The Hub's own reading of the repo's card metadata at the pinned commit.

    Offline: the README in the local Hub cache, if any. Online: one `model_info` call (no
    download, no retry loop) at HF_ENDPOINT. Unreachable or missing means "not stated".
    """
    import os

    from huggingface_hub import HfApi, is_offline_mode, try_to_load_from_cache

    if is_offline_mode():
        cached = try_to_load_from_cache(repo, "README.md", revision=revision)
        return _readme_license(Path(cached)) if isinstance(cached, str) else None
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
        info = api.model_info(repo, revision=revision, timeout=15)
    except (HfHubHTTPError, httpx.HTTPError, OSError):
        return None
    data = info.card_data
    return _normalize(data.get("license") if data is not None else None)
