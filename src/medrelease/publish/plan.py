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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.core.errors import InputError
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
from medrelease.recipe.load import LoadedRecipe


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


def published_manifest(manifest: Manifest, overrides: dict[str, bool], gates: GateVerdict) -> bytes:
    """The release record as published: stable bytes for an unchanged release."""
    # What made and checked the weights (merge, gate, quantize) is published; local
    # bookkeeping (pipeline fingerprints, timestamps) and the card/publish records are not, so a
    # card-only change does not touch the quant repos.
    data = {k: v for k, v in manifest.data.items() if k not in ("updated_at", "pipeline")}
    data["steps"] = {
        k: v for k, v in manifest.data.get("steps", {}).items() if k not in ("publish", "card")
    }
    recipe = dict(data.get("recipe") or {})
    if recipe.get("path"):  # the file name, not the publisher's local folders
        recipe["path"] = Path(str(recipe["path"])).name
        data["recipe"] = recipe
    if any(overrides.values()):
        data["publication"] = {"overrides": overrides, "gates_passed": gates.passed}
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def _with_notice(readme: bytes, gates: GateVerdict) -> bytes:
    """Put the override warning right after the card's YAML front matter."""
    text = readme.decode("utf-8")
    notice = OVERRIDE_NOTICE.format(reasons="; ".join(gates.reasons) or "not run")
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


def _accepted_quants(manifest: Manifest) -> dict[str, list[str]]:
    """family -> release-relative files of accepted quants (others are never published)."""
    step = manifest.step("quantize")
    out: dict[str, list[str]] = {}
    if step is None or step.get("status") != "done":
        return out
    for quant in step.get("quants") or []:
        if quant.get("accepted") is True:
            out.setdefault(str(quant.get("family")), []).extend(sorted(quant.get("files") or {}))
    return out


def build_plan(
    loaded: LoadedRecipe,
    paths: ReleasePaths,
    *,
    allow_failed_gates: bool = False,
    hashes: HashCache | None = None,
) -> PublishPlan:
    recipe = loaded.recipe
    rel_info = recipe.release
    cfg = recipe.publish
    hashes = hashes or HashCache(paths.hash_cache)
    if not paths.manifest.is_file():
        raise InputError(
            f"no release to publish: {paths.manifest} does not exist",
            hint="run `medrelease merge`, `gate`, `quantize` and `card` first",
        )
    manifest = Manifest.load(paths.root)
    merge = manifest.step("merge")
    if merge is None or merge.get("status") != "done" or not paths.merged.is_dir():
        raise InputError(
            "no merged model to publish (steps.merge is missing or not done)",
            where=str(paths.manifest),
            hint="run `medrelease merge RECIPE` first",
        )
    verdict = gate_verdict(manifest, paths, hashes)
    require_gates(verdict, allow_failed_gates=allow_failed_gates)
    overrides = {"allow_failed_gates": bool(allow_failed_gates and not verdict.passed)}
    card = manifest.step("card")
    if card is None or card.get("status") != "done" or not (paths.card / "README.md").is_file():
        raise InputError(
            "no model card to publish (steps.card is missing or card/README.md does not exist)",
            where=str(paths.manifest),
            hint="run `medrelease card RECIPE` first",
        )

    def render(template: str) -> str:
        return cfg.render(
            template, repo=rel_info.repo, name=rel_info.name, version=rel_info.version
        )

    tag = render(cfg.tag)
    message = render(cfg.commit_message)
    manifest_bytes = published_manifest(manifest, overrides, verdict)
    quants = _accepted_quants(manifest)
    layout: list[tuple[str, str, list[tuple[str, str]], str]] = []  # role, repo, files, card

    merged_files = sorted(rel for rel in (merge.get("outputs") or {}) if rel.startswith("merged/"))
    main_files = [(rel, rel.removeprefix("merged/")) for rel in merged_files]
    if (paths.card / "metrics.png").is_file():
        main_files.append(("card/metrics.png", "metrics.png"))
    # the gates' task files (eval/) and the Hub's eval results travel with the main card
    for rel in sorted(card.get("outputs") or {}):
        if rel.startswith("card/eval/"):
            main_files.append((rel, rel.removeprefix("card/")))
        elif rel.startswith("card/eval_results/"):
            main_files.append((rel, ".eval_results/" + rel.removeprefix("card/eval_results/")))
    layout.append(("main", rel_info.repo, main_files, "card/README.md"))
    if quants.get("gguf"):
        files = [(rel, Path(rel).name) for rel in quants["gguf"]]
        imatrix = ((manifest.step("quantize") or {}).get("imatrix") or {}).get("file")
        if imatrix:  # ship the importance matrix so others can make more quants with it
            files.append((imatrix, Path(imatrix).name))
        layout.append(("gguf", render(cfg.gguf_repo), files, "card/gguf/README.md"))
    if quants.get("awq"):
        files = [(rel, rel.removeprefix("quant/awq/")) for rel in quants["awq"]]
        layout.append(("awq", render(cfg.awq_repo), files, "card/awq/README.md"))

    to_verify = [rel for _, _, files, card_rel in layout for rel, _ in files] + [
        card_rel for *_, card_rel in layout
    ]
    missing_cards = [c for *_, c in layout if not (paths.root / c).is_file()]
    if missing_cards:
        raise InputError(
            f"missing model card(s): {', '.join(missing_cards)}",
            where=str(paths.card),
            hint="re-run `medrelease card RECIPE` after `medrelease quantize`",
        )
    verify_files(to_verify, paths, recorded_outputs(manifest), hashes)

    repos: list[RepoPlan] = []
    for role, repo_id, files, card_rel in layout:
        planned = [_disk_file(paths, rel, in_repo, hashes) for rel, in_repo in files]
        readme = (paths.root / card_rel).read_bytes()
        if overrides["allow_failed_gates"]:
            planned.append(_generated("README.md", _with_notice(readme, verdict), card_rel))
        else:
            planned.append(_disk_file(paths, card_rel, "README.md", hashes))
        planned.append(_generated("manifest.json", manifest_bytes))
        seen: set[str] = set()
        for f in planned:
            if f.path_in_repo in seen:
                raise InputError(f"two files would be published as {repo_id}/{f.path_in_repo}")
            seen.add(f.path_in_repo)
        repos.append(
            RepoPlan(role, repo_id, tag, message, sorted(planned, key=lambda f: f.path_in_repo))
        )
    hashes.save()
    warnings = []
    if overrides["allow_failed_gates"]:
        warnings.append("publishing a release that failed its gates (--allow-failed-gates)")
    return PublishPlan(
        rel_info.name, rel_info.version, repos, verdict, overrides, cfg.private, warnings
    )
