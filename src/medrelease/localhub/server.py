"""A Hub-API-compatible HTTP server for publishing and downloading, on 127.0.0.1 only.

It speaks the subset of the Hugging Face Hub API that `huggingface_hub` uses to create repos,
upload (preupload, LFS basic/multipart/verify, Xet through a local CAS folder), commit
atomically (ndjson, `parentCommit` -> 412), tag, branch, open pull requests, list refs,
commits and trees, report model info, and serve `resolve` downloads. The real client talks
to it over real HTTP, so tests and the offline demo exercise the same code path as the Hub.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from medrelease.localhub import xet
from medrelease.localhub.store import (
    LFS_SIZE_THRESHOLD,
    LFS_SUFFIXES,
    POINTER_SIZE,
    Repo,
    Store,
    StoreError,
    entry_oid,
    now_iso,
)

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
BAD_TOKEN_MESSAGE = "Invalid credentials in Authorization header"
TREE_PAGE = 1000


@dataclass
class Fault:
    """Answer the next `times` requests whose path contains `path_part` with `status`."""

    path_part: str
    status: int
    times: int = 1
    method: str | None = None


@dataclass
class HubState:
    store: Store
    tokens: Mapping[str, str] | None  # token -> user; None accepts any non-empty token
    multipart_threshold: int
    multipart_chunk: int
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    faults: list[Fault] = field(default_factory=list)
    uploads: Counter[str] = field(default_factory=Counter)  # oid -> completed LFS uploads
    events: Counter[str] = field(default_factory=Counter)  # e.g. "commit", "xet-write-token"
    base_url: str = ""

    def sign(self, oid: str) -> str:
        return hmac.new(self.secret, oid.encode(), hashlib.sha256).hexdigest()[:32]


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "medrelease-localhub"
    state: HubState  # set on the subclass made by `make_server`

    # --- plumbing ---------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines would include upload signatures, and tests stay quiet."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _body(self) -> bytes:
        self.body_consumed = True
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _json_body(self) -> Any:
        raw = self._body()
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise StoreError(400, "request body is not valid JSON") from None

    def _send(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        if self.close_connection:
            # Say so: a client that pools this connection would otherwise send its next
            # request into a socket we are about to close ("Server disconnected").
            self.send_header("Connection", "close")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers=headers)

    def _dispatch(self, method: str) -> None:
        state = self.state
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        raw_parts = [p for p in split.path.split("/") if p]
        parts = [unquote(p) for p in raw_parts]
        self.body_consumed = False
        try:
            for fault in state.faults:
                hit = fault.times > 0 and fault.path_part in split.path
                if hit and fault.method in (None, method):
                    fault.times -= 1
                    self._body()
                    self._error(fault.status, f"injected fault {fault.status}")
                    return
            self.user = self._authenticate()
            self._route(method, parts)
        except StoreError as err:
            self._discard_unread_body()
            self._error(err.status, err.message, err.code)
        except BrokenPipeError:
            pass

    def _discard_unread_body(self) -> None:
        """Keep the connection usable after an early error: unread body bytes would be
        parsed as the next request. Small bodies are drained; large ones close the socket."""
        if self.body_consumed:
            return
        length = int(self.headers.get("Content-Length") or 0)
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if chunked or length > 8 << 20:
            self.close_connection = True
        elif length:
            self.rfile.read(length)
        self.body_consumed = True

    def _authenticate(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        token = auth[7:].strip()
        tokens = self.state.tokens
        if tokens is None:
            return "user" if token else None
        user = tokens.get(token)
        if user is None:
            raise StoreError(401, BAD_TOKEN_MESSAGE)
        return user

    def _require_user(self) -> str:
        if self.user is None:
            raise StoreError(401, "You must be authenticated to write (send a token)")
        return self.user

    # --- routing ----------------------------------------------------------------------
    def _route(self, method: str, p: list[str]) -> None:
        if p[:2] == ["api", "agent-harnesses"]:
            return self._json({"standardEnvVars": [], "harnesses": {}})
        if p[:2] == ["api", "whoami-v2"]:
            user = self._require_user()
            return self._json({"type": "user", "name": user, "orgs": [], "auth": {}})
        if p[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if p[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if p[:3] == ["api", "repos", "delete"] and method in ("POST", "DELETE"):
            return self._delete_repo()
        if len(p) >= 4 and p[0] == "api" and p[1] in REPO_TYPES:
            return self._repo_api(method, REPO_TYPES[p[1]], f"{p[2]}/{p[3]}", p[4:])
        if p[:2] == ["_lfs", "upload"] and method == "PUT":
            return self._lfs_put(p[2])
        if p[:2] == ["_lfs", "part"] and method == "PUT":
            return self._lfs_part(p[2], int(p[3]))
        if p[:2] == ["_lfs", "complete"] and method == "POST":
            return self._lfs_complete(p[2])
        if p[:2] == ["_lfs", "verify"] and method == "POST":
            return self._lfs_verify(p[2])
        repo_type = "model"
        if p and p[0] in ("datasets", "spaces"):
            repo_type, p = REPO_TYPES[p[0]], p[1:]
        if len(p) >= 5 and p[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, f"{p[0]}/{p[1]}", p[3], "/".join(p[4:]))
        if len(p) >= 2 and p[1].endswith(".git") and p[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(repo_type, f"{p[0]}/{p[1][:-4]}")
        raise StoreError(404, f"no such endpoint: {method} /{'/'.join(p)}")

    def _repo_api(self, method: str, repo_type: str, repo_id: str, rest: list[str]) -> None:
        store = self.state.store
        action = rest[0] if rest else ""
        with store.lock:
            repo = store.get(repo_type, repo_id)
            if self.user is None and repo.data.get("private"):
                raise StoreError(401, f"Repository not found: {repo_id}", "RepoNotFound")
            if method == "GET" and action in ("", "revision"):
                rev = rest[1] if action == "revision" else "main"
                return self._info(repo, rev)
            if method == "GET" and action == "refs":
                return self._refs(repo)
            if method == "GET" and action == "commits":
                return self._commits(repo, rest[1] if len(rest) > 1 else "main")
            if method == "GET" and action == "tree":
                return self._tree(repo, rest[1], "/".join(rest[2:]))
            if method == "POST" and action == "paths-info":
                return self._paths_info(repo, rest[1])
            if method == "POST" and action == "preupload":
                return self._preupload(repo, rest[1])
            if method == "GET" and action in ("xet-write-token", "xet-read-token"):
                if action == "xet-write-token":
                    self._require_user()
                return self._xet_token(action)
            if method == "POST" and action == "commit":
                return self._commit(repo, rest[1])
            if action == "tag":
                return self._tag(repo, method, rest[1])
            if action == "branch":
                return self._branch(repo, method, "/".join(rest[1:]))
            if action == "discussions":
                return self._discussions(repo, method, rest[1:])
            if method == "PUT" and action == "settings":
                self._require_user()
                body = self._json_body()
                if "private" in body:
                    repo.data["private"] = bool(body["private"])
                if "gated" in body:
                    repo.data["gated"] = body["gated"]
                repo.save()
                return self._json({})
        raise StoreError(404, f"no such endpoint: {method} {action} on {repo_id}")

    # --- repos ------------------------------------------------------------------------
    def _create_repo(self) -> None:
        user = self._require_user()
        body = self._json_body()
        name = body.get("name") or ""
        owner = body.get("organization") or user
        repo_type = body.get("type") or "model"
        repo_id = f"{owner}/{name}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*", repo_id):
            raise StoreError(400, f"invalid repo name {repo_id!r}")
        url = self._repo_url(repo_type, repo_id)
        private = body.get("private") or body.get("visibility") == "private"
        with self.state.store.lock:
            if self.state.store.exists(repo_type, repo_id):
                msg = "You already created this model repo"
                return self._json({"error": msg, "url": url}, 409, {"X-Error-Message": msg})
            self.state.store.create(repo_type, repo_id, private=bool(private), author=user)
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        user = self._require_user()
        body = self._json_body()
        repo_id = f"{body.get('organization') or user}/{body.get('name')}"
        with self.state.store.lock:
            self.state.store.delete(body.get("type") or "model", repo_id)
        self._json({})

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.state.base_url}/{prefix}{repo_id}"

    def _validate_yaml(self) -> None:
        import yaml

        body = self._json_body()
        content = str(body.get("content", ""))
        errors: list[dict[str, str]] = []
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
        if match:
            try:
                meta = yaml.safe_load(match.group(1))
                if meta is not None and not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML metadata: {exc}"})
        if errors:
            msg = "; ".join(e["message"] for e in errors)
            return self._json({"errors": errors}, 400, {"X-Error-Message": msg})
        self._json({"errors": [], "warnings": []})

    # --- reading ----------------------------------------------------------------------
    def _file_json(self, repo: Repo, path: str, entry: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "file",
            "path": path,
            "oid": entry_oid(entry, self.state.store.blobs),
            "size": entry["size"],
        }
        if entry.get("lfs"):
            out["lfs"] = {
                "oid": entry["sha256"],
                "size": entry["size"],
                "pointerSize": POINTER_SIZE,
            }
        return out

    def _info(self, repo: Repo, rev: str) -> None:
        commit = repo.resolve(rev)
        tree = repo.tree(commit)
        blobs = self.query.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for path in sorted(tree):
            entry = tree[path]
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib["size"] = entry["size"]
                sib["blobId"] = entry_oid(entry, self.state.store.blobs)
                if entry.get("lfs"):
                    sib["lfs"] = {
                        "size": entry["size"],
                        "sha256": entry["sha256"],
                        "pointerSize": POINTER_SIZE,
                    }
            siblings.append(sib)
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
        card = self._card_data(tree)
        if card is not None:
            body["cardData"] = card
        self._json(body)

    def _card_data(self, tree: dict[str, Any]) -> dict[str, Any] | None:
        entry = tree.get("README.md")
        if entry is None:
            return None
        import yaml

        text = self.state.store.blobs.path(entry["sha256"]).read_text(errors="replace")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
        if not match:
            return None
        try:
            meta = yaml.safe_load(match.group(1))
        except yaml.YAMLError:
            return None
        return meta if isinstance(meta, dict) else None

    def _refs(self, repo: Repo) -> None:
        def ref(name: str, full: str, commit: str) -> dict[str, str]:
            return {"name": name, "ref": full, "targetCommit": commit}

        body = {
            "branches": [ref(n, f"refs/heads/{n}", c) for n, c in repo.data["branches"].items()],
            "tags": [ref(n, f"refs/tags/{n}", t["commit"]) for n, t in repo.data["tags"].items()],
            "converts": [],
            "pullRequests": [ref(n, n, c) for n, c in repo.data["prs"].items()],
        }
        self._json(body)

    def _commits(self, repo: Repo, rev: str) -> None:
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
        self._json(out)

    def _tree(self, repo: Repo, rev: str, prefix: str) -> None:
        commit = repo.resolve(rev)
        tree = repo.tree(commit)
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        base = prefix.strip("/")
        if (
            base
            and base not in {p.rsplit("/", 1)[0] for p in tree if "/" in p}
            and not any(p.startswith(base + "/") for p in tree)
        ):
            raise StoreError(404, f"{base} does not exist on {rev}", "EntryNotFound")
        items: dict[str, dict[str, Any]] = {}
        for path, entry in sorted(tree.items()):
            if base and not path.startswith(base + "/"):
                continue
            rel = path[len(base) + 1 :] if base else path
            if not recursive and "/" in rel:
                folder = f"{base}/{rel.split('/', 1)[0]}" if base else rel.split("/", 1)[0]
                items.setdefault(
                    folder, {"type": "directory", "path": folder, "oid": "0" * 40, "size": 0}
                )
                continue
            if recursive:
                parts = rel.split("/")[:-1]
                for i in range(len(parts)):
                    folder = "/".join(([base] if base else []) + parts[: i + 1])
                    items.setdefault(
                        folder, {"type": "directory", "path": folder, "oid": "0" * 40, "size": 0}
                    )
            items[path] = self._file_json(repo, path, entry)
        listing = [items[k] for k in sorted(items)]
        start = int(self.query.get("cursor", "0") or 0)
        page = listing[start : start + TREE_PAGE]
        headers = {}
        if start + TREE_PAGE < len(listing):
            here = f"{self.state.base_url}{urlsplit(self.path).path}"
            nxt = f"{here}?recursive={recursive}&cursor={start + TREE_PAGE}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._json(page, headers=headers)

    def _paths_info(self, repo: Repo, rev: str) -> None:
        tree = repo.tree(repo.resolve(rev))
        raw = self._body()
        try:
            wanted = json.loads(raw).get("paths", [])
        except ValueError:
            wanted = parse_qs(raw.decode()).get("paths", [])
        self._json([self._file_json(repo, p, tree[p]) for p in wanted if p in tree])

    def _resolve(self, repo_type: str, repo_id: str, rev: str, path: str) -> None:
        store = self.state.store
        with store.lock:
            repo = store.get(repo_type, repo_id)
            if self.user is None and repo.data.get("private"):
                raise StoreError(401, f"Repository not found: {repo_id}", "RepoNotFound")
            commit = repo.resolve(rev)
            entry = repo.tree(commit).get(path)
        if entry is None:
            raise StoreError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        blob = store.blobs.path(entry["sha256"])
        etag = entry["sha256"] if entry.get("lfs") else entry_oid(entry, store.blobs)
        size = entry["size"]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry.get("lfs"):
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(size)
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        end = size - 1
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else size - 1
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(blob, "rb") as fh:
            fh.seek(start)
            remaining = length
            while remaining > 0:
                chunk = fh.read(min(1 << 20, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)

    # --- uploading --------------------------------------------------------------------
    def _preupload(self, repo: Repo, rev: str) -> None:
        self._require_user()
        body = self._json_body()
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
                oid = entry["sha256"] if lfs else entry_oid(entry, self.state.store.blobs)
            files.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._json({"files": files})

    def _xet_token(self, action: str) -> None:
        self.state.events[action] += 1
        cas = f"local://{self.state.store.xet_dir.resolve()}"
        exp = int(time.time()) + 3600
        token = "local-xet-" + secrets.token_hex(8)
        headers = {
            "X-Xet-Cas-Url": cas,
            "X-Xet-Access-Token": token,
            "X-Xet-Token-Expiration": str(exp),
        }
        self._json({"accessToken": token, "exp": exp, "casUrl": cas}, headers=headers)

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self._require_user()
        with self.state.store.lock:
            self.state.store.get(repo_type, repo_id)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise StoreError(400, "only LFS uploads are supported")
        base = self.state.base_url
        out = []
        for obj in body.get("objects", []):
            oid, size = str(obj["oid"]), int(obj["size"])
            if not re.fullmatch(r"[0-9a-f]{64}", oid):
                raise StoreError(400, f"invalid LFS oid {oid!r}")
            item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self.state.store.blobs.has(oid):
                sig = self.state.sign(oid)
                verify = {"href": f"{base}/_lfs/verify/{oid}?sig={sig}"}
                if size > self.state.multipart_threshold:
                    chunk = self.state.multipart_chunk
                    n = -(-size // chunk)
                    header: dict[str, str] = {"chunk_size": str(chunk)}
                    for i in range(1, n + 1):
                        header[str(i)] = f"{base}/_lfs/part/{oid}/{i}?sig={sig}"
                    upload = {"href": f"{base}/_lfs/complete/{oid}?sig={sig}", "header": header}
                else:
                    upload = {"href": f"{base}/_lfs/upload/{oid}?sig={sig}"}
                item["actions"] = {"upload": upload, "verify": verify}
            out.append(item)
        self._json({"transfer": "basic", "objects": out, "hash_algo": "sha256"})

    def _check_sig(self, oid: str) -> None:
        if not hmac.compare_digest(self.query.get("sig", ""), self.state.sign(oid)):
            raise StoreError(403, "upload URL signature is invalid")

    def _read_to(self, tmp: Path) -> None:
        self.body_consumed = True
        length = int(self.headers.get("Content-Length") or 0)
        with open(tmp, "wb") as fh:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(1 << 20, remaining))
                if not chunk:
                    raise StoreError(400, "upload ended early")
                fh.write(chunk)
                remaining -= len(chunk)

    def _lfs_put(self, oid: str) -> None:
        self._check_sig(oid)
        blobs = self.state.store.blobs
        tmp = blobs.temp_path()
        try:
            self._read_to(tmp)
            blobs.put_file(tmp, oid)
        finally:
            tmp.unlink(missing_ok=True)
        self.state.uploads[oid] += 1
        self._send(200)

    def _parts_dir(self, oid: str) -> Path:
        return self.state.store.root / "objects" / ".parts" / oid

    def _lfs_part(self, oid: str, number: int) -> None:
        self._check_sig(oid)
        folder = self._parts_dir(oid)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{number}.tmp"
        self._read_to(tmp)
        etag = hashlib.md5(tmp.read_bytes(), usedforsecurity=False).hexdigest()
        tmp.replace(folder / str(number))
        self._send(200, headers={"ETag": f'"{etag}"'})

    def _lfs_complete(self, oid: str) -> None:
        self._check_sig(oid)
        body = self._json_body()
        folder = self._parts_dir(oid)
        blobs = self.state.store.blobs
        tmp = blobs.temp_path()
        try:
            with open(tmp, "wb") as out:
                for part in sorted(body.get("parts", []), key=lambda x: int(x["partNumber"])):
                    data = (folder / str(part["partNumber"])).read_bytes()
                    etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
                    if str(part["etag"]).strip('"') != etag:
                        raise StoreError(400, f"part {part['partNumber']} etag mismatch")
                    out.write(data)
            blobs.put_file(tmp, oid)
        except FileNotFoundError:
            raise StoreError(400, f"multipart upload of {oid} is missing parts") from None
        finally:
            tmp.unlink(missing_ok=True)
        for part_file in folder.glob("*"):
            part_file.unlink()
        folder.rmdir()
        self.state.uploads[oid] += 1
        self._send(200)

    def _lfs_verify(self, oid: str) -> None:
        self._check_sig(oid)
        body = self._json_body()
        path = self.state.store.blobs.path(oid)
        if not path.is_file() or path.stat().st_size != int(body.get("size", -1)):
            raise StoreError(404, f"LFS object {oid} was not uploaded")
        self._send(200)

    # --- commits and refs -------------------------------------------------------------
    def _commit(self, repo: Repo, rev: str) -> None:
        user = self._require_user()
        lines = [json.loads(x) for x in self._body().splitlines() if x.strip()]
        if not lines or lines[0].get("key") != "header":
            raise StoreError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        create_pr = self.query.get("create_pr") in ("1", "true", "True")
        store = self.state.store
        if create_pr:
            base = repo.resolve(rev)
            ref = self._open_pr(
                repo, header.get("summary") or "update", header.get("description") or "", base, user
            )
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
            key, value = line.get("key"), line.get("value", {})
            path = str(value.get("path", "")).strip("/")
            if key == "file":
                data = base64.b64decode(value["content"])
                digest = store.blobs.put_bytes(data)
                tree[path] = {"sha256": digest, "size": len(data), "lfs": False}
            elif key == "lfsFile":
                oid, size = str(value["oid"]), int(value["size"])
                if not store.blobs.has(oid) and not xet.materialize(
                    store.xet_dir, store.blobs, oid, size
                ):
                    raise StoreError(
                        422, f"LFS file {path} ({oid}) was not uploaded before the commit"
                    )
                tree[path] = {"sha256": oid, "size": size, "lfs": True}
            elif key == "deletedFile":
                if tree.pop(path, None) is None:
                    raise StoreError(
                        404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                    )
            elif key == "deletedFolder":
                for p in [p for p in tree if p.startswith(path + "/")]:
                    del tree[p]
            else:
                raise StoreError(400, f"unknown commit operation {key!r}")
        oid = repo.add_commit(
            current, tree, header.get("summary") or "", header.get("description") or "", user
        )
        repo.move_ref(ref, oid)
        repo.save()
        self.state.events["commit"] += 1
        url = self._repo_url(repo.repo_type, repo.repo_id)
        pr_url = f"{url}/discussions/{ref.rsplit('/', 1)[-1]}" if create_pr else None
        self._json({"commitOid": oid, "commitUrl": f"{url}/commit/{oid}", "pullRequestUrl": pr_url})

    def _open_pr(self, repo: Repo, title: str, description: str, base: str, user: str) -> str:
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

    def _tag(self, repo: Repo, method: str, rev: str) -> None:
        self._require_user()
        if method == "DELETE":
            if repo.data["tags"].pop(rev, None) is None:
                raise StoreError(404, f"tag {rev} does not exist", "RevisionNotFound")
            repo.save()
            return self._json({})
        body = self._json_body()
        tag = str(body.get("tag", ""))
        if not tag:
            raise StoreError(400, "missing tag name")
        if tag in repo.data["tags"]:
            raise StoreError(409, f"Tag {tag} already exists")
        repo.data["tags"][tag] = {"commit": repo.resolve(rev), "message": body.get("message")}
        repo.save()
        self._json({})

    def _branch(self, repo: Repo, method: str, name: str) -> None:
        self._require_user()
        if method == "DELETE":
            if name == "main" or repo.data["branches"].pop(name, None) is None:
                raise StoreError(404, f"branch {name} cannot be deleted", "RevisionNotFound")
            repo.save()
            return self._json({})
        body = self._json_body()
        if name in repo.data["branches"]:
            raise StoreError(409, f"Reference already exists: refs/heads/{name}")
        start = body.get("startingPoint") or "main"
        repo.data["branches"][name] = repo.resolve(start)
        repo.save()
        self._json({})

    def _discussions(self, repo: Repo, method: str, rest: list[str]) -> None:
        if method == "POST" and not rest:
            user = self._require_user()
            body = self._json_body()
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
                ref = self._open_pr(
                    repo,
                    body.get("title", ""),
                    body.get("description", ""),
                    repo.resolve("main"),
                    user,
                )
                num = int(ref.rsplit("/", 1)[-1])
            repo.save()
            return self._json(
                {
                    "num": num,
                    "url": f"{self._repo_url(repo.repo_type, repo.repo_id)}/discussions/{num}",
                }
            )
        if method == "GET" and not rest:
            items = [self._discussion_json(repo, d) for d in repo.data["discussions"].values()]
            return self._json(
                {"discussions": items, "count": len(items), "start": 0, "numClosedDiscussions": 0}
            )
        disc = repo.data["discussions"].get(rest[0]) if rest else None
        if disc is None:
            raise StoreError(404, "Discussion not found")
        if method == "GET" and len(rest) == 1:
            return self._json(self._discussion_json(repo, disc))
        if method == "POST" and rest[1:] == ["merge"]:
            self._require_user()
            return self._merge_pr(repo, disc)
        if method == "PATCH" or (method == "POST" and rest[1:] == ["status"]):
            self._require_user()
            disc["status"] = self._json_body().get("status", disc["status"])
            repo.save()
            return self._json({"newStatus": {"id": secrets.token_hex(12)}})
        raise StoreError(404, "no such discussion endpoint")

    def _discussion_json(self, repo: Repo, disc: dict[str, Any]) -> dict[str, Any]:
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

    def _merge_pr(self, repo: Repo, disc: dict[str, Any]) -> None:
        if disc["status"] != "open":
            raise StoreError(409, f"pull request #{disc['num']} is {disc['status']}")
        ref = f"refs/pr/{disc['num']}"
        pr_head = repo.data["prs"][ref]
        main = repo.data["branches"]["main"]
        tree = repo.tree(pr_head)
        oid = repo.add_commit(
            main, tree, f"Merge pull request #{disc['num']}: {disc['title']}", "", self.user or ""
        )
        repo.data["branches"]["main"] = oid
        disc["status"] = "merged"
        disc["mergeCommitId"] = oid
        repo.save()
        self._json({})


def make_server(
    root: Path,
    *,
    port: int = 0,
    tokens: Mapping[str, str] | None = None,
    multipart_threshold: int = 64 * 1024 * 1024,
    multipart_chunk: int = 16 * 1024 * 1024,
) -> tuple[ThreadingHTTPServer, HubState]:
    """A server bound to 127.0.0.1 (never another interface: it has no real access control)."""
    state = HubState(
        store=Store(Path(root)),
        tokens=tokens,
        multipart_threshold=multipart_threshold,
        multipart_chunk=multipart_chunk,
    )
    handler = type("BoundHubHandler", (HubHandler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    return server, state


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="localhub", daemon=True)
    thread.start()
    return thread
