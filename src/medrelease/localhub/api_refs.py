"""Tags and branches: POST/DELETE /api/{type}s/{id}/tag/{rev} and .../branch/{name}.

A tag records the commit its revision resolves to now; a branch starts at `startingPoint`
(default main). `main` cannot be deleted.
"""

from __future__ import annotations

from medrelease.localhub.handler import BaseHandler, segments
from medrelease.localhub.store import Repo, StoreError


def tag(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    (rev, *_) = segments(args, 1, "/api/{type}s/{owner}/{name}/tag/{revision}")
    h.require_user()
    if h.command == "DELETE":
        if repo.data["tags"].pop(rev, None) is None:
            raise StoreError(404, f"tag {rev} does not exist", "RevisionNotFound")
        repo.save()
        return h.reply_json({})
    body = h.read_json()
    name = str(body.get("tag", ""))
    if not name:
        raise StoreError(400, "missing tag name")
    if name in repo.data["tags"]:
        raise StoreError(409, f"Tag {name} already exists")
    repo.data["tags"][name] = {"commit": repo.resolve(rev), "message": body.get("message")}
    repo.save()
    h.reply_json({})


def branch(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    name = "/".join(segments(args, 1, "/api/{type}s/{owner}/{name}/branch/{branch}"))
    h.require_user()
    if h.command == "DELETE":
        if name == "main" or repo.data["branches"].pop(name, None) is None:
            raise StoreError(404, f"branch {name} cannot be deleted", "RevisionNotFound")
        repo.save()
        return h.reply_json({})
    body = h.read_json()
    if name in repo.data["branches"]:
        raise StoreError(409, f"Reference already exists: refs/heads/{name}")
    start = body.get("startingPoint") or "main"
    repo.data["branches"][name] = repo.resolve(start)
    repo.save()
    h.reply_json({})
