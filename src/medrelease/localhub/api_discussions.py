"""Discussions and pull requests: /api/{type}s/{id}/discussions[/{num}[/merge|/status]].

A pull request is a discussion with a ref `refs/pr/{num}` that commits (`create_pr=1`) move;
merging commits the PR's tree onto main.
"""

from __future__ import annotations

import secrets
from typing import Any

from medrelease.localhub.handler import BaseHandler
from medrelease.localhub.store import Repo, StoreError, now_iso


def open_pr(repo: Repo, title: str, description: str, base: str, user: str) -> str:
    """Record a new pull request whose ref starts at commit `base`; returns its ref."""
    num = len(repo.data["discussions"]) + 1
    ref = f"refs/pr/{num}"
    repo.data["discussions"][str(num)] = {
        "num": num,
        "title": title,
        "description": description,
        "isPullRequest": True,
        "status": "open",
        "author": user,
        "createdAt": now_iso(),
        "base": "refs/heads/main",
    }
    repo.data["prs"][ref] = base
    return ref


def discussions(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    method = h.command
    if method == "POST" and not args:
        return _create(h, repo)
    if method == "GET" and not args:
        items = [_discussion_json(repo, d) for d in repo.data["discussions"].values()]
        return h.reply_json(
            {"discussions": items, "count": len(items), "start": 0, "numClosedDiscussions": 0}
        )
    disc = repo.data["discussions"].get(args[0]) if args else None
    if disc is None:
        raise StoreError(404, "Discussion not found")
    if method == "GET" and len(args) == 1:
        return h.reply_json(_discussion_json(repo, disc))
    if method == "POST" and args[1:] == ["merge"]:
        h.require_user()
        return _merge_pr(h, repo, disc)
    if method == "PATCH" or (method == "POST" and args[1:] == ["status"]):
        h.require_user()
        disc["status"] = h.read_json().get("status", disc["status"])
        repo.save()
        return h.reply_json({"newStatus": {"id": secrets.token_hex(12)}})
    raise StoreError(404, "no such discussion endpoint")


def _create(h: BaseHandler, repo: Repo) -> None:
    user = h.require_user()
    body = h.read_json()
    if not body.get("pullRequest"):
        num = len(repo.data["discussions"]) + 1
        repo.data["discussions"][str(num)] = {
            "num": num,
            "title": body.get("title", ""),
            "description": body.get("description", ""),
            "isPullRequest": False,
            "status": "open",
            "author": user,
            "createdAt": now_iso(),
        }
    else:
        title, description = body.get("title", ""), body.get("description", "")
        ref = open_pr(repo, title, description, repo.resolve("main"), user)
        num = int(ref.rsplit("/", 1)[-1])
    repo.save()
    url = f"{h.repo_url(repo.repo_type, repo.repo_id)}/discussions/{num}"
    h.reply_json({"num": num, "url": url})


def _discussion_json(repo: Repo, disc: dict[str, Any]) -> dict[str, Any]:
    body = {
        "num": disc["num"],
        "title": disc["title"],
        "status": disc["status"],
        "isPullRequest": disc["isPullRequest"],
        "author": {"name": disc["author"]},
        "createdAt": disc["createdAt"],
        "repo": {"name": repo.repo_id, "type": repo.repo_type},
        "events": [
            {
                "id": f"{disc['num']:024x}",
                "type": "comment",
                "createdAt": disc["createdAt"],
                "author": {"name": disc["author"]},
                "data": {
                    "edited": False,
                    "hidden": False,
                    "latest": {"raw": disc["description"]},
                },
            }
        ],
        "filesWithConflicts": [],
        "pinned": False,
        "numComments": 1,
    }
    if disc["isPullRequest"]:
        body["changes"] = {"base": disc.get("base", "refs/heads/main")}
        if disc.get("mergeCommitId"):
            body["changes"]["mergeCommitId"] = disc["mergeCommitId"]
    return body


def _merge_pr(h: BaseHandler, repo: Repo, disc: dict[str, Any]) -> None:
    if disc["status"] != "open":
        raise StoreError(409, f"pull request #{disc['num']} is {disc['status']}")
    ref = f"refs/pr/{disc['num']}"
    pr_head = repo.data["prs"][ref]
    main = repo.data["branches"]["main"]
    files = repo.tree(pr_head)
    oid = repo.add_commit(
        main, files, f"Merge pull request #{disc['num']}: {disc['title']}", "", h.user or ""
    )
    repo.data["branches"]["main"] = oid
    disc["status"] = "merged"
    disc["mergeCommitId"] = oid
    repo.save()
    h.reply_json({})
