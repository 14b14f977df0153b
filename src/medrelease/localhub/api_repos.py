"""Repositories and what can be read about them: the account, create/delete, settings,
model info (siblings, cardData), refs, commits, tree listings, paths-info, YAML validation.

Endpoints take the handler (plus, under /api/{type}s/{owner}/{name}/..., the repo, already
looked up under the store lock, and the path segments after the action).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from medrelease.localhub.handler import BaseHandler, segments
from medrelease.localhub.store import POINTER_SIZE, Repo, StoreError, entry_oid

TREE_PAGE = 1000
FRONT_MATTER = re.compile(r"^---\s*\n(.*?)\n---\s*(\n|$)", re.S)
REPO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


# --- account and repo lifecycle: /api/... -------------------------------------------------
def agent_harnesses(h: BaseHandler, rest: list[str]) -> None:
    h.reply_json({"standardEnvVars": [], "harnesses": {}})


def whoami(h: BaseHandler, rest: list[str]) -> None:
    user = h.require_user()
    h.reply_json({"type": "user", "name": user, "orgs": [], "auth": {}})


def create_repo(h: BaseHandler, rest: list[str]) -> None:
    user = h.require_user()
    body = h.read_json()
    name = body.get("name") or ""
    owner = body.get("organization") or user
    repo_type = body.get("type") or "model"
    repo_id = f"{owner}/{name}"
    if not REPO_NAME.fullmatch(repo_id):
        raise StoreError(400, f"invalid repo name {repo_id!r}")
    url = h.repo_url(repo_type, repo_id)
    private = body.get("private") or body.get("visibility") == "private"
    store = h.state.store
    with store.lock:
        if store.exists(repo_type, repo_id):
            msg = "You already created this model repo"
            return h.reply_json({"error": msg, "url": url}, 409, {"X-Error-Message": msg})
        store.create(repo_type, repo_id, private=bool(private), author=user)
    h.reply_json({"url": url, "name": repo_id, "id": repo_id})


def delete_repo(h: BaseHandler, rest: list[str]) -> None:
    user = h.require_user()
    body = h.read_json()
    repo_id = f"{body.get('organization') or user}/{body.get('name')}"
    with h.state.store.lock:
        h.state.store.delete(body.get("type") or "model", repo_id)
    h.reply_json({})


def validate_yaml(h: BaseHandler, rest: list[str]) -> None:
    import yaml

    body = h.read_json()
    content = str(body.get("content", ""))
    errors: list[dict[str, str]] = []
    match = FRONT_MATTER.match(content)
    if match:
        try:
            meta = yaml.safe_load(match.group(1))
            if meta is not None and not isinstance(meta, dict):
                errors.append({"message": "metadata must be a YAML mapping"})
        except yaml.YAMLError as exc:
            errors.append({"message": f"invalid YAML metadata: {exc}"})
    if errors:
        msg = "; ".join(e["message"] for e in errors)
        return h.reply_json({"errors": errors}, 400, {"X-Error-Message": msg})
    h.reply_json({"errors": [], "warnings": []})


def settings(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    h.require_user()
    body = h.read_json()
    if "private" in body:
        repo.data["private"] = bool(body["private"])
    if "gated" in body:
        repo.data["gated"] = body["gated"]
    repo.save()
    h.reply_json({})


# --- model info: GET /api/{type}s/{id}[/revision/{rev}] -----------------------------------
def info(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    _info(h, repo, "main")


def info_at_revision(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    (rev, *_) = segments(args, 1, "/api/{type}s/{owner}/{name}/revision/{revision}")
    _info(h, repo, rev)


def _info(h: BaseHandler, repo: Repo, rev: str) -> None:
    commit = repo.resolve(rev)
    tree = repo.tree(commit)
    blobs = h.query.get("blobs", "").lower() in ("1", "true")
    siblings = [_sibling(h, path, tree[path], blobs) for path in sorted(tree)]
    body: dict[str, Any] = {
        "id": repo.repo_id,
        "sha": commit,
        "private": bool(repo.data.get("private")),
        "gated": repo.data.get("gated", False),
        "disabled": False,
        "createdAt": repo.data["created_at"],
        "lastModified": repo.data["commits"][commit]["date"],
        "siblings": siblings,
        "tags": [],
        "downloads": 0,
        "likes": 0,
    }
    card = _card_data(h, tree)
    if card is not None:
        body["cardData"] = card
    h.reply_json(body)


def _sibling(h: BaseHandler, path: str, entry: dict[str, Any], blobs: bool) -> dict[str, Any]:
    sib: dict[str, Any] = {"rfilename": path}
    if blobs:
        sib["size"] = entry["size"]
        sib["blobId"] = entry_oid(entry, h.state.store.blobs)
        if entry.get("lfs"):
            sib["lfs"] = {
                "size": entry["size"],
                "sha256": entry["sha256"],
                "pointerSize": POINTER_SIZE,
            }
    return sib


def _card_data(h: BaseHandler, tree: dict[str, Any]) -> dict[str, Any] | None:
    """The README's YAML front matter, as the Hub reports it in `cardData`."""
    entry = tree.get("README.md")
    if entry is None:
        return None
    import yaml

    text = h.state.store.blobs.path(entry["sha256"]).read_text(errors="replace")
    match = FRONT_MATTER.match(text)
    if not match:
        return None
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return None
    return meta if isinstance(meta, dict) else None


# --- history: refs, commits ---------------------------------------------------------------
def refs(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    def ref(name: str, full: str, commit: str) -> dict[str, str]:
        return {"name": name, "ref": full, "targetCommit": commit}

    body = {
        "branches": [ref(n, f"refs/heads/{n}", c) for n, c in repo.data["branches"].items()],
        "tags": [ref(n, f"refs/tags/{n}", t["commit"]) for n, t in repo.data["tags"].items()],
        "converts": [],
        "pullRequests": [ref(n, n, c) for n, c in repo.data["prs"].items()],
    }
    h.reply_json(body)


def commits(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    rev = args[0] if args else "main"
    out = []
    for oid in repo.history(repo.resolve(rev)):
        c = repo.data["commits"][oid]
        out.append(
            {
                "id": oid,
                "title": c["title"],
                "message": c["message"],
                "authors": [{"user": c["author"]}],
                "date": c["date"],
            }
        )
    h.reply_json(out)


# --- files of a revision: tree, paths-info ------------------------------------------------
def file_json(h: BaseHandler, path: str, entry: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "file",
        "path": path,
        "oid": entry_oid(entry, h.state.store.blobs),
        "size": entry["size"],
    }
    if entry.get("lfs"):
        out["lfs"] = {
            "oid": entry["sha256"],
            "size": entry["size"],
            "pointerSize": POINTER_SIZE,
        }
    return out


def _folder(path: str) -> dict[str, Any]:
    return {"type": "directory", "path": path, "oid": "0" * 40, "size": 0}


def tree(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    """GET .../tree/{rev}/{path}: one folder level, or all of it with ?recursive, paged."""
    rev, *below = segments(args, 1, "/api/{type}s/{owner}/{name}/tree/{revision}[/{path}]")
    base = "/".join(below).strip("/")
    files = repo.tree(repo.resolve(rev))
    recursive = h.query.get("recursive", "").lower() in ("1", "true")
    if (
        base
        and base not in {p.rsplit("/", 1)[0] for p in files if "/" in p}
        and not any(p.startswith(base + "/") for p in files)
    ):
        raise StoreError(404, f"{base} does not exist on {rev}", "EntryNotFound")
    items: dict[str, dict[str, Any]] = {}
    for path, entry in sorted(files.items()):
        if base and not path.startswith(base + "/"):
            continue
        rel = path[len(base) + 1 :] if base else path
        if not recursive and "/" in rel:
            folder = f"{base}/{rel.split('/', 1)[0]}" if base else rel.split("/", 1)[0]
            items.setdefault(folder, _folder(folder))
            continue
        if recursive:
            parts = rel.split("/")[:-1]
            for i in range(len(parts)):
                folder = "/".join(([base] if base else []) + parts[: i + 1])
                items.setdefault(folder, _folder(folder))
        items[path] = file_json(h, path, entry)
    listing = [items[k] for k in sorted(items)]
    _reply_page(h, listing, recursive)


def _reply_page(h: BaseHandler, listing: list[dict[str, Any]], recursive: bool) -> None:
    """One page of a listing; a `Link: <...>; rel="next"` header points at the next one."""
    cursor = h.query.get("cursor", "0") or "0"
    if not cursor.isascii() or not cursor.isdigit():
        raise StoreError(400, f"cursor must be a number, not {cursor!r}")
    start = int(cursor)
    page = listing[start : start + TREE_PAGE]
    headers = {}
    if start + TREE_PAGE < len(listing):
        here = f"{h.state.base_url}{urlsplit(h.path).path}"
        nxt = f"{here}?recursive={recursive}&cursor={start + TREE_PAGE}"
        headers["Link"] = f'<{nxt}>; rel="next"'
    h.reply_json(page, headers=headers)


def paths_info(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    (rev, *_) = segments(args, 1, "/api/{type}s/{owner}/{name}/paths-info/{revision}")
    files = repo.tree(repo.resolve(rev))
    raw = h.read_body()
    try:
        wanted = json.loads(raw).get("paths", [])
    except ValueError:
        wanted = parse_qs(raw.decode()).get("paths", [])
    h.reply_json([file_json(h, p, files[p]) for p in wanted if p in files])
