"""The publishing plan: which repos get which files, read from the release folder + manifest.

    release.repo   merged/*, README.md (= card/README.md), metrics.png, manifest.json,
                   eval/** (= card/eval/**), .eval_results/* (= card/eval_results/*)
    <repo>-GGUF    accepted quant/gguf/*.gguf, README.md (= card/gguf/README.md), manifest.json
    <repo>-AWQ     accepted quant/awq/*, README.md (= card/awq/README.md), manifest.json

The `manifest.json` a repo receives is the release record without the publish step's own
entry and timestamp, so publishing again with nothing changed uploads identical bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.core.errors import InputError, UsageError
from medrelease.core.hashing import HashCache, file_record, sha256_bytes
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.publish.checks import (
    GateVerdict,
    gate_verdict,
    recorded_outputs,
    require_gates,
    verify_files,
)
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.manifest import CardRecord, MergeRecord, read_step
from medrelease.records.public import public_manifest_data
from medrelease.records.quantize import QuantizeRecord
from medrelease.stages.provenance import BANNER_MARKER, OverriddenStage, banner, overridden_stages


@dataclass(frozen=True)
class PlannedFile:
    path_in_repo: str
    sha256: str
    size: int
    origin: str  # release-relative path, or "generated"
    source: Path | None = None  # a file on disk ...
    data: bytes | None = None  # ... or generated content

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.source is not None
        return self.source.read_bytes()

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path_in_repo,
            "size": self.size,
            "sha256": self.sha256,
            "from": self.origin,
        }


@dataclass
class RepoPlan:
    role: str  # main | gguf | awq
    repo_id: str
    tag: str
    commit_message: str
    files: list[PlannedFile]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class PublishPlan:
    release: str
    version: str
    repos: list[RepoPlan]
    gates: GateVerdict
    overrides: dict[str, bool]
    private: bool
    warnings: list[str] = field(default_factory=list)
    # stages the build was made from that are not the recipe's checkpoints (provenance)
    overridden_stages: list[OverriddenStage] = field(default_factory=list)

    def digest_input(self) -> dict[str, Any]:
        return {
            r.repo_id: {"tag": r.tag, "files": {f.path_in_repo: f.sha256 for f in r.files}}
            for r in self.repos
        }


OVERRIDE_NOTICE = (
    "> [!WARNING]\n"
    "> This release was published with `--allow-failed-gates`: it did **not** pass its\n"
    "> evaluation gates ({reasons}). See `manifest.json` and the gate report before using it.\n\n"
)


def published_manifest(
    manifest: Manifest,
    overrides: dict[str, bool],
    gates: GateVerdict,
    overridden: list[OverriddenStage] | None = None,
) -> bytes:
    """The release record as published: stable bytes for an unchanged release."""
    # What made and checked the weights (merge, gate, quantize) is published; local
    # bookkeeping (pipeline fingerprints, timestamps) and the card/publish records are not, so a
    # card-only change does not touch the quant repos.
    data = {k: v for k, v in manifest.data.items() if k not in ("updated_at", "pipeline")}
    data["steps"] = {
        k: v for k, v in manifest.data.get("steps", {}).items() if k not in ("publish", "card")
    }
    # stage sources, --set overrides, the recipe's path: nothing of the publisher's machine
    data = public_manifest_data(data)
    if any(overrides.values()) or overridden:
        data["publication"] = {"overrides": overrides, "gates_passed": gates.passed}
    if overridden:  # the banner of a build made from other checkpoints than the recipe's
        data["publication"]["overridden_stages"] = [s.as_dict() for s in overridden]
        data["publication"]["warning"] = "NOT THE DECLARED CHECKPOINTS: built from " + "; ".join(
            s.line() for s in overridden
        )
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def _with_notice(readme: bytes, notice: str) -> bytes:
    """Put a warning right after the card's YAML front matter."""
    text = readme.decode("utf-8")
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            cut = text.find("\n", end + 4) + 1 or len(text)
            return (text[:cut] + "\n" + notice + text[cut:]).encode()
    return (notice + text).encode()


def _disk_file(paths: ReleasePaths, rel: str, path_in_repo: str, hashes: HashCache) -> PlannedFile:
    path = paths.root / rel
    rec = file_record(path, hashes)
    return PlannedFile(path_in_repo, rec["sha256"], rec["size"], rel, source=path)


def _generated(path_in_repo: str, data: bytes, origin: str = "generated") -> PlannedFile:
    return PlannedFile(path_in_repo, sha256_bytes(data), len(data), origin, data=data)


def _accepted_quants(quantize: QuantizeRecord | None) -> dict[str, list[str]]:
    """family -> release-relative files of accepted quants (others are never published)."""
    out: dict[str, list[str]] = {}
    if quantize is None or quantize.get("status") != "done":
        return out
    for quant in quantize["quants"]:
        if quant["accepted"] is True:
            out.setdefault(quant["family"], []).extend(sorted(quant["files"]))
    return out


@dataclass
class _Release:
    """What the manifest says is ready to publish (every step it needs has run)."""

    manifest: Manifest
    merge: MergeRecord
    card: CardRecord
    quantize: QuantizeRecord | None
    verdict: GateVerdict
    overrides: dict[str, bool]


@dataclass
class _Layout:
    """One repo: (release-relative path, path in the repo) of its files, and its card."""

    role: str
    repo_id: str
    files: list[tuple[str, str]]
    card: str


def _ready_release(paths: ReleasePaths, hashes: HashCache, *, allow_failed_gates: bool) -> _Release:
    """The release's records, once merge, gate (unless overridden) and card are done."""
    if not paths.manifest.is_file():
        raise InputError(
            f"no release to publish: {paths.manifest} does not exist",
            hint="run `medrelease merge`, `gate`, `quantize` and `card` first",
        )
    manifest = Manifest.load(paths.root)
    merge = read_step(manifest, "merge", MergeRecord)
    if merge is None or merge.get("status") != "done" or not paths.merged.is_dir():
        raise InputError(
            "no merged model to publish (steps.merge is missing or not done)",
            where=str(paths.manifest),
            hint="run `medrelease merge RECIPE` first",
        )
    verdict = gate_verdict(manifest, paths, hashes)
    require_gates(verdict, allow_failed_gates=allow_failed_gates)
    overrides = {"allow_failed_gates": bool(allow_failed_gates and not verdict.passed)}
    card = read_step(manifest, "card", CardRecord)
    if card is None or card.get("status") != "done" or not (paths.card / "README.md").is_file():
        raise InputError(
            "no model card to publish (steps.card is missing or card/README.md does not exist)",
            where=str(paths.manifest),
            hint="run `medrelease card RECIPE` first",
        )
    quantize = read_step(manifest, "quantize", QuantizeRecord)
    return _Release(manifest, merge, card, quantize, verdict, overrides)


def _layout(
    release: _Release, paths: ReleasePaths, render: Callable[[str], str], cfg: Any, repo: str
) -> list[_Layout]:
    """Which files go to which repo (the table in this module's docstring)."""
    merged_files = sorted(
        rel for rel in release.merge.get("outputs", {}) if rel.startswith("merged/")
    )
    main_files = [(rel, rel.removeprefix("merged/")) for rel in merged_files]
    if (paths.card / "metrics.png").is_file():
        main_files.append(("card/metrics.png", "metrics.png"))
    # the gates' task files (eval/) and the Hub's eval results travel with the main card
    for rel in sorted(release.card.get("outputs", {})):
        if rel.startswith("card/eval/"):
            main_files.append((rel, rel.removeprefix("card/")))
        elif rel.startswith("card/eval_results/"):
            main_files.append((rel, ".eval_results/" + rel.removeprefix("card/eval_results/")))
    layout = [_Layout("main", repo, main_files, "card/README.md")]
    quants = _accepted_quants(release.quantize)
    if quants.get("gguf"):
        files = [(rel, Path(rel).name) for rel in quants["gguf"]]
        recorded = release.quantize.get("imatrix") if release.quantize else None
        imatrix = recorded.get("file") if recorded else None
        if imatrix:  # ship the importance matrix so others can make more quants with it
            files.append((imatrix, Path(imatrix).name))
        layout.append(_Layout("gguf", render(cfg.gguf_repo), files, "card/gguf/README.md"))
    if quants.get("awq"):
        files = [(rel, rel.removeprefix("quant/awq/")) for rel in quants["awq"]]
        layout.append(_Layout("awq", render(cfg.awq_repo), files, "card/awq/README.md"))
    return layout


def _verify_layout(
    layout: list[_Layout], paths: ReleasePaths, manifest: Manifest, hashes: HashCache
) -> None:
    """Every card exists, and every file to publish is what its step recorded."""
    missing_cards = [repo.card for repo in layout if not (paths.root / repo.card).is_file()]
    if missing_cards:
        raise InputError(
            f"missing model card(s): {', '.join(missing_cards)}",
            where=str(paths.card),
            hint="re-run `medrelease card RECIPE` after `medrelease quantize`",
        )
    to_verify = [rel for repo in layout for rel, _ in repo.files] + [r.card for r in layout]
    verify_files(to_verify, paths, recorded_outputs(manifest), hashes)


def _repo_plan(
    repo: _Layout,
    release: _Release,
    paths: ReleasePaths,
    hashes: HashCache,
    manifest_bytes: bytes,
    tag: str,
    message: str,
    overridden: list[OverriddenStage],
) -> RepoPlan:
    """The files of one repo, its card (with the override notices if any) and the manifest."""
    planned = [_disk_file(paths, rel, in_repo, hashes) for rel, in_repo in repo.files]
    notice = ""
    if release.overrides["allow_failed_gates"]:
        notice += OVERRIDE_NOTICE.format(reasons="; ".join(release.verdict.reasons) or "not run")
    readme = (paths.root / repo.card).read_bytes()
    if overridden and BANNER_MARKER.encode() not in readme:  # the card may carry it already
        notice = banner(overridden) + notice
    if notice:
        planned.append(_generated("README.md", _with_notice(readme, notice), repo.card))
    else:
        planned.append(_disk_file(paths, repo.card, "README.md", hashes))
    planned.append(_generated("manifest.json", manifest_bytes))
    seen: set[str] = set()
    for f in planned:
        if f.path_in_repo in seen:
            raise InputError(f"two files would be published as {repo.repo_id}/{f.path_in_repo}")
        seen.add(f.path_in_repo)
    return RepoPlan(
        repo.role, repo.repo_id, tag, message, sorted(planned, key=lambda f: f.path_in_repo)
    )


def build_plan(
    loaded: LoadedRecipe,
    paths: ReleasePaths,
    *,
    allow_failed_gates: bool = False,
    allow_overridden_stages: bool = False,
    hashes: HashCache | None = None,
) -> PublishPlan:
    """The plan. `allow_overridden_stages=False` refuses a build made from checkpoints that
    are not the recipe's (exit 2); True publishes it with a banner on every card and in the
    manifest naming each such stage."""
    rel_info = loaded.recipe.release
    cfg = loaded.recipe.publish
    hashes = hashes or HashCache(paths.hash_cache)
    release = _ready_release(paths, hashes, allow_failed_gates=allow_failed_gates)
    overridden = overridden_stages(loaded, release.manifest, hashes)
    if overridden and not allow_overridden_stages:
        raise UsageError(
            f"refusing to publish under {rel_info.repo}: this build was made from stage "
            "checkpoints that are not the recipe's: " + "; ".join(s.line() for s in overridden),
            where=str(paths.manifest),
            hint="rebuild with the declared stages (no --stage, no stage overlay), or publish "
            "to other repos (publish.gguf_repo/release.repo) with --allow-overridden-stages, "
            "which puts a banner naming these stages on every card and in manifest.json",
        )

    def render(template: str) -> str:
        return cfg.render(
            template, repo=rel_info.repo, name=rel_info.name, version=rel_info.version
        )

    tag = render(cfg.tag)
    message = render(cfg.commit_message)
    manifest_bytes = published_manifest(
        release.manifest, release.overrides, release.verdict, overridden
    )
    layout = _layout(release, paths, render, cfg, rel_info.repo)
    _verify_layout(layout, paths, release.manifest, hashes)
    repos = [
        _repo_plan(repo, release, paths, hashes, manifest_bytes, tag, message, overridden)
        for repo in layout
    ]
    hashes.save()
    warnings = []
    if release.overrides["allow_failed_gates"]:
        warnings.append("publishing a release that failed its gates (--allow-failed-gates)")
    if overridden:
        warnings.append(
            "publishing a build of checkpoints that are not the recipe's "
            f"({', '.join(s.name for s in overridden)}): every card and manifest.json say so"
        )
    return PublishPlan(
        rel_info.name, rel_info.version, repos, release.verdict, release.overrides, cfg.private,
        warnings, overridden,
    )  # fmt: skip
