"""After a commit: the Hub's view of the repo at that commit must equal what we published.

A Hub (or a proxy, or a storage backend) that stores different bytes than it was sent would
otherwise go unnoticed: the upload "succeeded". We list the repo tree at the new commit with
huggingface_hub and compare every file with the plan (whose sha256 and size the manifest
recorded, checked again by `build_plan` just before the upload):

* LFS files: the Hub reports their sha256 and size; both must equal the manifest's.
* Regular (small) files: the Hub reports size and git blob id (a sha1 of the bytes; it keeps
  no sha256 for them), so we compare the size and the git blob id of the recorded bytes.
* Nothing may be missing and nothing extra (except the Hub's own `.gitattributes`).

A difference raises `PublishError` (exit 6) before the version tag is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medrelease.core.errors import PublishError
from medrelease.publish.plan import PlannedFile, RepoPlan

HUB_OWN_FILES = frozenset({".gitattributes"})
SHOWN = 5  # differences named in the message; the rest are counted


@dataclass(frozen=True)
class HubEntry:
    """One file as the Hub lists it at a commit."""

    size: int
    sha256: str | None  # LFS files only
    blob_id: str


def list_remote(api: Any, repo_id: str, commit: str) -> dict[str, HubEntry]:
    """Every file of `repo_id` at `commit`, from the Hub's tree listing (recursive)."""
    from huggingface_hub.hf_api import RepoFile

    out: dict[str, HubEntry] = {}
    for item in api.list_repo_tree(repo_id, revision=commit, recursive=True):
        if not isinstance(item, RepoFile):
            continue  # folders
        sha = item.lfs.sha256 if item.lfs is not None else None
        out[item.path] = HubEntry(int(item.size), sha, str(item.blob_id))
    return out


def compare(plan_files: list[PlannedFile], remote: dict[str, HubEntry]) -> list[str]:
    """One line per difference between the plan (= the manifest) and the Hub's listing."""
    from huggingface_hub.utils.sha import git_hash

    remote = dict(remote)
    problems: list[str] = []
    for f in plan_files:
        entry = remote.pop(f.path_in_repo, None)
        if entry is None:
            problems.append(f"{f.path_in_repo}: missing on the Hub")
            continue
        if entry.size != f.size:
            problems.append(
                f"{f.path_in_repo}: size {entry.size} on the Hub, {f.size} in the manifest"
            )
        elif entry.sha256 is not None:
            if entry.sha256 != f.sha256:
                problems.append(
                    f"{f.path_in_repo}: sha256 {entry.sha256[:12]} on the Hub, "
                    f"{f.sha256[:12]} in the manifest"
                )
        elif entry.blob_id != git_hash(f.read()):
            problems.append(
                f"{f.path_in_repo}: content on the Hub (git blob {entry.blob_id[:12]}) differs "
                f"from the manifest's (sha256 {f.sha256[:12]})"
            )
    for path in sorted(set(remote) - HUB_OWN_FILES):
        problems.append(f"{path}: on the Hub but not in the release")
    return problems


def verify_remote(api: Any, plan: RepoPlan, commit: str, *, tagging: bool) -> int:
    """Raise PublishError unless the Hub's files at `commit` equal the plan; returns the count
    of files checked."""
    problems = compare(plan.files, list_remote(api, plan.repo_id, commit))
    if problems:
        shown = "; ".join(problems[:SHOWN])
        if len(problems) > SHOWN:
            shown += f" (+{len(problems) - SHOWN} more)"
        tag_note = f"; tag {plan.tag} was not created" if tagging else ""
        raise PublishError(
            f"{plan.repo_id} at {commit[:12]}: the Hub's files differ from the manifest: "
            f"{shown}{tag_note}",
            hint="the Hub stored something other than what was uploaded; re-run "
            "`medrelease publish` to upload the differing files again (a new commit), and "
            "check any proxy between you and the Hub",
        )
    return len(plan.files)
