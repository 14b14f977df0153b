"""Publish one repo plan to a Hub-API endpoint: one atomic commit, then the version tag.

Per repo: create it if needed; compare the plan with the remote main branch (sha256 for LFS
files, git blob sha1 for small ones); if nothing differs, make no commit (only add a missing
tag); otherwise upload large files first (`preupload_lfs_files`: the server says which it
already has, so an interrupted run resumes without re-sending them), then one
`create_commit` with `parent_commit` = the state we compared against, so a concurrent push
fails (412) instead of being overwritten; then list the repo at the new commit and compare
every file with the manifest (publish/verify_remote.py: a difference is exit 6, no tag); then
tag. In review mode the commit becomes a pull request and no tag is made (a human merges, then
tags).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.errors import PublishError
from medrelease.publish.hub_errors import hub_error, is_transient
from medrelease.publish.plan import PlannedFile, RepoPlan
from medrelease.publish.verify_remote import verify_remote
from medrelease.records.manifest import RepoOutcome

REGULAR_MAX = 10 * 1024 * 1024  # above this a file is always LFS on the Hub


@dataclass
class RemoteFile:
    size: int | None
    sha256: str | None  # LFS files
    blob_id: str | None  # git blob sha1 (regular files)


# Files that may change under an existing release tag: documentation, not weights.
DOC_FILES = frozenset({"README.md", "manifest.json", "metrics.png"})


@dataclass
class RepoDiff:
    head: str
    added: list[PlannedFile] = field(default_factory=list)
    changed: list[PlannedFile] = field(default_factory=list)
    unchanged: list[PlannedFile] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    tag_commit: str | None = None
    exists: bool = True

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.deleted)


def same_content(local: PlannedFile, remote: RemoteFile) -> bool:
    if remote.sha256 is not None:
        return remote.sha256 == local.sha256
    if remote.blob_id is None or local.size > REGULAR_MAX:
        return False
    from huggingface_hub.utils.sha import git_hash

    return bool(remote.blob_id == git_hash(local.read()))


class HubPublisher:
    def __init__(
        self,
        endpoint: str,
        reporter: Reporter,
        *,
        review: bool = False,
        private: bool = False,
        retries: int = 3,
        backoff_s: float = 2.0,
    ):
        from huggingface_hub import HfApi

        self.endpoint = endpoint.rstrip("/")
        self.api = HfApi(endpoint=self.endpoint)  # token: environment or login cache only
        self.reporter = reporter
        self.review = review
        self.private = private
        self.retries = retries
        self.backoff_s = backoff_s

    # --- reading the remote -----------------------------------------------------------
    def remote_diff(self, plan: RepoPlan, revision: str = "main") -> RepoDiff:
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            info = self.api.model_info(plan.repo_id, revision=revision, files_metadata=True)
        except RepositoryNotFoundError:
            return RepoDiff(head="", added=list(plan.files), exists=False)
        remote: dict[str, RemoteFile] = {}
        for s in info.siblings or []:
            sha = s.lfs.sha256 if s.lfs is not None else None
            remote[s.rfilename] = RemoteFile(s.size, sha, s.blob_id)
        diff = RepoDiff(head=str(info.sha))
        for f in plan.files:
            r = remote.pop(f.path_in_repo, None)
            if r is None:
                diff.added.append(f)
            elif same_content(f, r):
                diff.unchanged.append(f)
            else:
                diff.changed.append(f)
        diff.deleted = sorted(p for p in remote if p != ".gitattributes")
        refs = self.api.list_repo_refs(plan.repo_id)
        diff.tag_commit = next((t.target_commit for t in refs.tags if t.name == plan.tag), None)
        return diff

    def remote_readme(self, repo_id: str, revision: str) -> str | None:
        """The card currently on the Hub (for the dry-run diff)."""
        import tempfile

        from huggingface_hub.errors import EntryNotFoundError

        with tempfile.TemporaryDirectory(prefix="medrelease-card-") as tmp:
            try:
                path = self.api.hf_hub_download(
                    repo_id, "README.md", revision=revision, local_dir=tmp
                )
            except EntryNotFoundError:
                return None
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read()

    # --- publishing -------------------------------------------------------------------
    def publish(self, plan: RepoPlan) -> RepoOutcome:
        """Publish with retries for transient failures; each attempt re-reads the remote."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._publish_once(plan)
            except PublishError:
                raise
            except Exception as exc:
                if not is_transient(exc) or attempt > self.retries:
                    raise hub_error(
                        exc, repo_id=plan.repo_id, endpoint=self.endpoint, attempts=attempt
                    ) from exc
                wait = self.backoff_s * 2 ** (attempt - 1)
                why = hub_error(exc, repo_id=plan.repo_id, endpoint=self.endpoint)
                self.reporter.warn(f"{why}; retrying in {wait:.0f}s ({attempt}/{self.retries})")
                time.sleep(wait)

    def _publish_once(self, plan: RepoPlan) -> RepoOutcome:
        self.api.create_repo(plan.repo_id, exist_ok=True, private=self.private)
        diff = self.remote_diff(plan)
        outcome: RepoOutcome = {
            "repo": plan.repo_id,
            "role": plan.role,
            "url": f"{self.endpoint}/{plan.repo_id}",
            "tag": None if self.review else plan.tag,
            "files": len(plan.files),
            "added": [f.path_in_repo for f in diff.added],
            "changed": [f.path_in_repo for f in diff.changed],
            "deleted": diff.deleted,
            "unchanged": len(diff.unchanged),
        }
        if self._nothing_to_commit(plan, diff, outcome):
            return outcome
        self._check_tag(plan, diff, outcome)
        commit = self._commit(plan, diff)
        self._after_commit(plan, commit, outcome)
        return outcome

    def _nothing_to_commit(self, plan: RepoPlan, diff: RepoDiff, outcome: RepoOutcome) -> bool:
        """True (outcome `unchanged`) when an open pull request already holds this release
        (review mode) or the remote already equals the plan (then only a missing tag is made)."""
        if self.review and not diff.empty:
            pending = self._matching_open_pr(plan)
            if pending is not None:
                num, head = pending
                outcome["status"] = "unchanged"
                outcome["commit"] = head
                outcome["pr_num"] = num
                outcome["pr_url"] = f"{outcome['url']}/discussions/{num}"
                self.reporter.info(
                    f"{plan.repo_id}: pull request #{num} already holds this release"
                )
                return True
        if diff.empty:
            outcome["status"] = "unchanged"
            outcome["commit"] = diff.head
            if not self.review:
                self._ensure_tag(plan, diff.head, diff.tag_commit)
            self.reporter.info(f"{plan.repo_id}: nothing changed since {diff.head[:12]}; no commit")
            return True
        return False

    def _check_tag(self, plan: RepoPlan, diff: RepoDiff, outcome: RepoOutcome) -> None:
        """Under an existing release tag only documentation may change (`docs_only`)."""
        docs_only = all(
            p in DOC_FILES
            for p in [*(f.path_in_repo for f in diff.added + diff.changed), *diff.deleted]
        )
        if diff.tag_commit is not None and not self.review and docs_only:
            # A card fix after the release: commit it on main, keep the tag on the released
            # weights (versions are immutable; their documentation may improve).
            self.reporter.info(
                f"{plan.repo_id}: only the card/manifest changed since {plan.tag}; "
                f"updating main, the tag stays at {diff.tag_commit[:12]}"
            )
            outcome["docs_only"] = True
        elif diff.tag_commit is not None and not self.review:
            raise PublishError(
                f"{plan.repo_id} already has tag {plan.tag} (at {diff.tag_commit[:12]}) but the "
                "release content differs from what is on the Hub",
                hint="a published version is immutable: bump release.version in the recipe",
            )

    def _commit(self, plan: RepoPlan, diff: RepoDiff) -> Any:
        """Large files first (resumable), then one commit on the state compared against."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        uploads = diff.added + diff.changed
        additions = [
            CommitOperationAdd(f.path_in_repo, f.data if f.data is not None else str(f.source))
            for f in uploads
        ]
        deletions = [CommitOperationDelete(p) for p in diff.deleted]
        total = sum(f.size for f in uploads)
        label = f"upload {plan.repo_id}: {len(uploads)} file(s), {total / 1e6:.1f} MB"
        with self.reporter.phase(label, total=1):
            self.api.preupload_lfs_files(
                plan.repo_id,
                additions=additions,
                revision="main",
                create_pr=self.review,
            )
        return self.api.create_commit(
            plan.repo_id,
            operations=[*additions, *deletions],
            commit_message=plan.commit_message,
            commit_description=f"Published by medrelease ({len(uploads)} files, {total} bytes).",
            revision="main",
            parent_commit=diff.head or None,
            create_pr=self.review,
        )

    def _after_commit(self, plan: RepoPlan, commit: Any, outcome: RepoOutcome) -> None:
        """Verify the remote at the new commit, then tag it (or report the pull request)."""
        outcome["status"] = "pull-request" if self.review else "committed"
        outcome["commit"] = commit.oid
        # the Hub's listing at the new commit must equal the manifest before anything is tagged
        tagging = not self.review and not outcome.get("docs_only")
        outcome["verified_files"] = verify_remote(self.api, plan, commit.oid, tagging=tagging)
        if self.review:
            outcome["pr_url"] = commit.pr_url
            outcome["pr_num"] = commit.pr_num
            self.reporter.info(f"{plan.repo_id}: opened pull request {commit.pr_url} for review")
        elif outcome.get("docs_only"):
            self.reporter.info(f"{plan.repo_id}: committed {commit.oid[:12]} (card update)")
        else:
            self._ensure_tag(plan, commit.oid, None)
            self.reporter.info(f"{plan.repo_id}: committed {commit.oid[:12]}, tagged {plan.tag}")

    def _matching_open_pr(self, plan: RepoPlan) -> tuple[int, str] | None:
        """An open pull request whose files are exactly this release (review mode re-runs)."""
        refs = self.api.list_repo_refs(plan.repo_id, include_pull_requests=True)
        for pr in refs.pull_requests or []:
            num = int(pr.ref.rsplit("/", 1)[-1])
            if self.api.get_discussion_details(plan.repo_id, num).status != "open":
                continue
            if self.remote_diff(plan, revision=pr.ref).empty:
                return num, pr.target_commit
        return None

    def _ensure_tag(self, plan: RepoPlan, commit: str, existing: str | None) -> None:
        if existing == commit:
            return
        if existing is not None:
            self.reporter.warn(
                f"{plan.repo_id}: tag {plan.tag} points at {existing[:12]}, not at the current "
                f"commit {commit[:12]}; left as it is"
            )
            return
        self.api.create_tag(
            plan.repo_id, tag=plan.tag, revision=commit, tag_message=plan.commit_message
        )
