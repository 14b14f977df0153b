"""Commits: POST /api/{type}s/{id}/preupload/{rev}, then POST .../commit/{rev} (NDJSON).

Preupload tells the client which files go through LFS and which it already has. The commit
body is a header line then one line per operation (file, lfsFile, deletedFile,
deletedFolder); it applies atomically, refuses a stale `parentCommit` with 412 (as the Hub
does), and with `create_pr=1` opens a pull request instead of moving the branch.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from medrelease.localhub import xet
from medrelease.localhub.api_discussions import open_pr
from medrelease.localhub.handler import BaseHandler, segments
from medrelease.localhub.store import (
    LFS_SIZE_THRESHOLD,
    LFS_SUFFIXES,
    Repo,
    Store,
    StoreError,
    entry_oid,
)


def preupload(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    (rev, *_) = segments(args, 1, "/api/{type}s/{owner}/{name}/preupload/{revision}")
    h.require_user()
    body = h.read_json()
    try:
        tree = repo.tree(repo.resolve(rev))
    except StoreError:
        tree = {}  # a new PR or branch: nothing to compare with
    files = []
    for f in body.get("files", []):
        path, size = f["path"], int(f["size"])
        sample = base64.b64decode(f.get("sample", ""))
        lfs = path.endswith(LFS_SUFFIXES) or size >= LFS_SIZE_THRESHOLD or b"\0" in sample
        entry = tree.get(path)
        oid = None
        if entry is not None:
            oid = entry["sha256"] if lfs else entry_oid(entry, h.state.store.blobs)
        files.append(
            {
                "path": path,
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": False,
                "oid": oid,
            }
        )
    h.reply_json({"files": files})


def commit(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    (rev, *_) = segments(args, 1, "/api/{type}s/{owner}/{name}/commit/{revision}")
    user = h.require_user()
    try:
        lines = [json.loads(x) for x in h.read_body().splitlines() if x.strip()]
    except ValueError:
        raise StoreError(400, "commit payload is not NDJSON (one JSON object a line)") from None
    if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != "header":
        raise StoreError(400, "commit payload must start with a header line")
    header = lines[0]["value"]
    create_pr = h.query.get("create_pr") in ("1", "true", "True")
    if create_pr:
        base = repo.resolve(rev)
        summary, description = header.get("summary") or "update", header.get("description") or ""
        ref = open_pr(repo, summary, description, base, user)
        current = base
    else:
        ref, current = repo.head_of_writable(rev)
    parent = header.get("parentCommit")
    if parent and parent != current:
        raise StoreError(
            412,
            "A commit has happened since. Please refresh and try again.",
            "PreconditionFailed",
        )
    tree = repo.tree(current)
    for line in lines[1:]:
        _apply(h.state.store, tree, line)
    oid = repo.add_commit(
        current, tree, header.get("summary") or "", header.get("description") or "", user
    )
    repo.move_ref(ref, oid)
    repo.save()
    h.state.events["commit"] += 1
    url = h.repo_url(repo.repo_type, repo.repo_id)
    pr_url = f"{url}/discussions/{ref.rsplit('/', 1)[-1]}" if create_pr else None
    h.reply_json({"commitOid": oid, "commitUrl": f"{url}/commit/{oid}", "pullRequestUrl": pr_url})


def _apply(store: Store, tree: dict[str, Any], line: dict[str, Any]) -> None:
    """Apply one commit operation to `tree` (path -> entry), in place."""
    key, value = line.get("key"), line.get("value", {})
    path = str(value.get("path", "")).strip("/")
    if key == "file":
        data = base64.b64decode(value["content"])
        digest = store.blobs.put_bytes(data)
        tree[path] = {"sha256": digest, "size": len(data), "lfs": False}
    elif key == "lfsFile":
        oid, size = str(value["oid"]), int(value["size"])
        # An LFS file arrives first through /_lfs, or through Xet: rebuild it from the CAS.
        if not store.blobs.has(oid) and not xet.materialize(store.xet_dir, store.blobs, oid, size):
            raise StoreError(422, f"LFS file {path} ({oid}) was not uploaded before the commit")
        tree[path] = {"sha256": oid, "size": size, "lfs": True}
    elif key == "deletedFile":
        if tree.pop(path, None) is None:
            raise StoreError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
    elif key == "deletedFolder":
        for p in [p for p in tree if p.startswith(path + "/")]:
            del tree[p]
    else:
        raise StoreError(400, f"unknown commit operation {key!r}")
