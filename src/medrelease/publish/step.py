"""`medrelease publish`: the gated, verified release -> Hub repos (or a folder), atomically.

Library entry point: `publish_release(loaded, workdir=..., reporter=..., target=None, ...)`.
Targets: None / "hub" (HF_ENDPOINT or `endpoint=`, default the public Hub), an http(s) URL
(a Hub-API-compatible endpoint), or `dir://PATH` (the same layout written to a folder).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, cast

from medrelease.core.console import Reporter
from medrelease.core.errors import EnvironmentProblem, MedreleaseError, PublishError, UsageError
from medrelease.core.paths import DEFAULT_WORKDIR, ReleasePaths
from medrelease.core.runner import step_run
from medrelease.core.step import StepResult
from medrelease.publish.export import export_repo
from medrelease.publish.inputs import INPUTS
from medrelease.publish.plan import PublishPlan, RepoPlan, build_plan
from medrelease.publish.target import parse_dir_target, resolve_endpoint
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.manifest import PlannedRepo, PublishRecord, RepoOutcome, TargetRecord


def _require_token(endpoint: str) -> None:
    """Fail early, before any upload, when no token is available (never reads it out)."""
    from huggingface_hub import constants, get_token

    if constants.is_offline_mode():
        raise EnvironmentProblem(
            "HF_HUB_OFFLINE is set: huggingface_hub refuses every request, so nothing can be "
            "published",
            hint="unset HF_HUB_OFFLINE for the publish command (or use --target dir://PATH)",
        )
    if get_token() is None:
        raise PublishError(
            f"no Hub token: set HF_TOKEN or run `hf auth login` before publishing to {endpoint}",
            hint="the token is read only from the environment or huggingface_hub's login; "
            "it is never accepted on the command line",
        )


def publish_release(
    loaded: LoadedRecipe,
    *,
    workdir: Path = DEFAULT_WORKDIR,
    reporter: Reporter | None = None,
    target: str | None = None,
    endpoint: str | None = None,
    dry_run: bool = False,
    review: bool = False,
    allow_failed_gates: bool = False,
    allow_overridden_stages: bool = False,
    retries: int = 3,
    backoff_s: float = 2.0,
) -> StepResult[PublishRecord]:
    _quiet_hub()
    export_root = parse_dir_target(target) if target else None
    hub_endpoint = None if export_root is not None else resolve_endpoint(target, endpoint)
    if export_root is not None and review:
        raise UsageError("--review needs a Hub target (a folder export has no pull requests)")
    with step_run(INPUTS, loaded, workdir, reporter) as run:
        paths, reporter = run.paths, run.reporter
        # a dry run shows the plan of a stand-in build too (with its banner and a warning)
        plan = build_plan(
            loaded,
            paths,
            allow_failed_gates=allow_failed_gates,
            allow_overridden_stages=allow_overridden_stages or dry_run,
            hashes=run.hashes,
        )
        run.timer.lap("plan")
        for w in plan.warnings:
            reporter.warn(w)
        if dry_run:
            return _dry_run(plan, paths, hub_endpoint, export_root, review, reporter)
        if hub_endpoint is not None:
            _require_token(hub_endpoint)
        target_rec: TargetRecord = (
            {"kind": "dir", "path": str(export_root.resolve())}
            if export_root is not None
            else {"kind": "hub", "endpoint": hub_endpoint}
        )
        repos: list[RepoOutcome] = []
        record: PublishRecord = {
            "status": "done",
            "target": target_rec,
            "review": review,
            "gates_passed": plan.gates.passed,
            "overrides": plan.overrides,
            "overridden_stages": [s.as_dict() for s in plan.overridden_stages],
            "repos": repos,
            "outputs": {},
        }
        options = {"target": target, "endpoint": endpoint}
        try:
            for repo_plan in plan.repos:
                outcome = _publish_one(
                    repo_plan, export_root, hub_endpoint, reporter, review, plan, retries, backoff_s
                )
                repos.append(outcome)
            run.timer.lap("publish")
        except (MedreleaseError, KeyboardInterrupt) as err:
            record["status"] = "failed"
            record["error"] = str(err) if isinstance(err, MedreleaseError) else "interrupted"
            run.record(record, _components(run, options))
            raise
        changed = [r for r in repos if r.get("status") != "unchanged"]
        record["changed_repos"] = len(changed)
        run.record(record, _components(run, options))  # the destination as it now is
        if not changed:
            reporter.info("nothing changed since the last publish: no commit was made")
        return StepResult("publish", record, paths.manifest, skipped=not changed)


def _components(run: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Publish's components after it ran: its destination and what that now holds."""
    from medrelease.core.manifest import Manifest

    return INPUTS.compute(run.loaded, run.paths, Manifest.load(run.paths.root), run.hashes, options)


def _quiet_hub() -> None:
    """Our Reporter shows progress; the client's tqdm bars would interleave with it."""
    if os.environ.get("MEDRELEASE_DEBUG"):
        return
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()


def _publish_one(
    repo_plan: RepoPlan,
    export_root: Path | None,
    endpoint: str | None,
    reporter: Reporter,
    review: bool,
    plan: PublishPlan,
    retries: int,
    backoff_s: float,
) -> RepoOutcome:
    if export_root is not None:
        return export_repo(repo_plan, export_root, reporter)
    from medrelease.publish.hub import HubPublisher

    assert endpoint is not None
    publisher = HubPublisher(
        endpoint,
        reporter,
        review=review,
        private=plan.private,
        retries=retries,
        backoff_s=backoff_s,
    )
    return publisher.publish(repo_plan)


def _dry_run(
    plan: PublishPlan,
    paths: ReleasePaths,
    endpoint: str | None,
    export_root: Path | None,
    review: bool,
    reporter: Reporter,
) -> StepResult[PublishRecord]:
    """The plan, compared with the remote when it can be read; writes nothing anywhere."""
    repos: list[dict[str, Any]] = []
    publisher = None
    note = None
    if endpoint is not None:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            note = "remote not compared: HF_HUB_OFFLINE is set"
        else:
            from medrelease.publish.hub import HubPublisher

            publisher = HubPublisher(endpoint, reporter, review=review)
    for rp in plan.repos:
        entry: dict[str, Any] = {
            "repo": rp.repo_id,
            "role": rp.role,
            "tag": None if review else rp.tag,
            "size": rp.size,
            "files": [{**f.summary(), "status": "planned"} for f in rp.files],
        }
        if publisher is not None:
            try:
                diff = publisher.remote_diff(rp)
            except Exception as exc:  # a dry run reports, never fails, on remote trouble
                from medrelease.publish.hub_errors import hub_error

                entry["remote"] = str(
                    hub_error(exc, repo_id=rp.repo_id, endpoint=publisher.endpoint)
                )
            else:
                status = {f.path_in_repo: "new" for f in diff.added}
                status |= {f.path_in_repo: "changed" for f in diff.changed}
                status |= {f.path_in_repo: "unchanged" for f in diff.unchanged}
                for f in entry["files"]:
                    f["status"] = status[f["path"]]
                entry["files"] += [{"path": p, "status": "delete"} for p in diff.deleted]
                entry["remote"] = "new repo" if not diff.exists else f"main at {diff.head[:12]}"
                entry["would_commit"] = not diff.empty
                entry["card_diff"] = _card_diff(publisher, rp, diff.head if diff.exists else None)
        elif export_root is not None:
            from medrelease.publish.export import folder_state

            dest = export_root / rp.repo_id
            current = folder_state(dest)
            for f in entry["files"]:
                there = current.pop(f["path"], None)
                f["status"] = (
                    "new" if there is None else ("unchanged" if there == f["sha256"] else "changed")
                )
            entry["files"] += [{"path": p, "status": "delete"} for p in sorted(current)]
            entry["remote"] = str(dest) if dest.is_dir() else f"{dest} (new)"
        repos.append(entry)
    record: PublishRecord = {
        "status": "dry-run",
        "target": {"kind": "dir", "path": str(export_root)}
        if export_root
        else {"kind": "hub", "endpoint": endpoint},
        "review": review,
        "gates_passed": plan.gates.passed,
        "overrides": plan.overrides,
        "plan": cast(list[PlannedRepo], repos),  # built to that shape above
        "note": note,
    }
    return StepResult("publish", record, paths.manifest, skipped=True, warnings=plan.warnings)


def _card_diff(publisher: Any, rp: RepoPlan, head: str | None) -> str:
    new = (
        next(f for f in rp.files if f.path_in_repo == "README.md").read().decode("utf-8", "replace")
    )
    old = publisher.remote_readme(rp.repo_id, head) if head else None
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{rp.repo_id}/README.md (Hub)",
        tofile="README.md (this release)",
    )
    return "".join(lines)
