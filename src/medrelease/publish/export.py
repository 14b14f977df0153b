"""`dir://PATH`: the same repo layout written to a folder, for air-gapped transfer.

Each repo becomes `PATH/<owner>/<name>/` with exactly the files the Hub repo would hold.
A repo folder is built next to its final place and swapped in only when complete and
verified, so a killed export never leaves a half repo; an identical export is left alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from medrelease.core.atomic import staging_dir, sweep_stale_temps
from medrelease.core.console import Reporter
from medrelease.core.errors import PublishError
from medrelease.core.hashing import sha256_file_uncached
from medrelease.publish.plan import RepoPlan
from medrelease.records.manifest import RepoOutcome


def folder_state(folder: Path) -> dict[str, str]:
    """path in the repo -> sha256 of what an export folder holds now ({} when missing)."""
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): sha256_file_uncached(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def export_repo(plan: RepoPlan, root: Path, reporter: Reporter) -> RepoOutcome:
    dest = root / plan.repo_id
    wanted = {f.path_in_repo: f.sha256 for f in plan.files}
    outcome: RepoOutcome = {
        "repo": plan.repo_id,
        "role": plan.role,
        "url": dest.resolve().as_uri(),
        "tag": plan.tag,
        "files": len(plan.files),
    }
    current = folder_state(dest)
    # the same accounting as a Hub commit: a first export adds every file, changes none
    outcome["added"] = sorted(p for p in wanted if p not in current)
    outcome["changed"] = sorted(p for p in wanted if p in current and current[p] != wanted[p])
    outcome["deleted"] = sorted(p for p in current if p not in wanted)
    outcome["unchanged"] = sum(1 for p in wanted if current.get(p) == wanted[p])
    if current == wanted:
        reporter.info(f"{dest}: already holds this release; nothing written")
        outcome["status"] = "unchanged"
        return outcome
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(dest.parent)
    with staging_dir(dest, replace=True) as tmp:
        for f in plan.files:
            out = tmp / f.path_in_repo
            out.parent.mkdir(parents=True, exist_ok=True)
            if f.data is not None:
                out.write_bytes(f.data)
            else:
                assert f.source is not None
                shutil.copyfile(f.source, out)
            if sha256_file_uncached(out) != f.sha256:
                raise PublishError(f"copy of {f.origin} to {out} is corrupt (sha256 differs)")
    reporter.info(f"exported {plan.repo_id} to {dest} ({len(plan.files)} files)")
    outcome["status"] = "exported"
    return outcome
