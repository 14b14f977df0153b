"""On-disk state of the local Hub: repositories, commits, refs and content-addressed blobs.

Layout under the server root:

    objects/<aa>/<sha256>          every file body (regular and LFS), named by its sha256
    repos/<type>/<owner>/<name>.json   one repo: commits, branches, tags, discussions
    xet/                           the Xet CAS folder hf_xet writes chunks into (casUrl local://)

A commit's tree maps path -> {"sha256", "size", "lfs"}; a commit id is the sha1 of its
canonical JSON, so identical history gives identical ids (like git). State files are
replaced atomically, so a killed server keeps its last consistent state.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The Hub's default .gitattributes: these paths are stored with LFS whatever their size.
LFS_SUFFIXES = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gguf", ".gz", ".h5", ".joblib",
    ".mlmodel", ".model", ".msgpack", ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb",
    ".pickle", ".pkl", ".pt", ".pth", ".rar", ".safetensors", ".tar", ".tflite", ".tgz",
    ".wasm", ".xz", ".zip", ".zst",
)  # fmt: skip
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(
    f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES
).encode()
POINTER_SIZE = 134  # size of a git-lfs pointer file, as the Hub reports it


class StoreError(Exception):
    """A request the store refuses; carries the HTTP status and Hub error code."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Blobs:
    """Content-addressed file bodies (sha256)."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            _atomic_write(self.path(digest), data)
        return digest

    def put_file(self, tmp: Path, expected_sha256: str) -> None:
        """Move a finished upload into place after checking its hash (refuse a corrupt body)."""
        digest = hashlib.sha256()
        with open(tmp, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != expected_sha256:
            tmp.unlink(missing_ok=True)
            raise StoreError(400, f"uploaded content does not match sha256 {expected_sha256}")
        final = self.path(expected_sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    def temp_path(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        os.close(fd)
        return Path(tmp)


def entry_oid(entry: dict[str, Any], blobs: Blobs) -> str:
    """The oid a client sees: git sha1 of the body, or of the LFS pointer for LFS files."""
    if entry.get("lfs"):
        pointer = (
            "version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{entry['sha256']}\nsize {entry['size']}\n"
        ).encode()
        return git_blob_sha1(pointer)
    return git_blob_sha1(blobs.path(entry["sha256"]).read_bytes())


@dataclass
class Repo:
    """One repository's history and refs, persisted as a single JSON document."""

    path: Path
    data: dict[str, Any]

    @property
    def repo_id(self) -> str:
        return str(self.data["id"])

    @property
    def repo_type(self) -> str:
        return str(self.data["type"])

    def save(self) -> None:
        _atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode())

    # --- revisions --------------------------------------------------------------------
    def resolve(self, revision: str) -> str:
        """Commit id for a branch, tag, refs/pr/N, refs/heads/x, refs/tags/x or commit id."""
        rev = revision
        for prefix, table in (("refs/heads/", "branches"), ("refs/tags/", "tags")):
            if rev.startswith(prefix) and rev[len(prefix) :] in self.data[table]:
                return str(self.data[table][rev[len(prefix) :]])
        if rev in self.data["branches"]:
            return str(self.data["branches"][rev])
        if rev in self.data["tags"]:
            return str(self.data["tags"][rev]["commit"])
        if rev.startswith("refs/pr/") and rev in self.data["prs"]:
            return str(self.data["prs"][rev])
        if rev in self.data["commits"]:
            return rev
        if len(rev) >= 7 and all(c in "0123456789abcdef" for c in rev):
            hits = [c for c in self.data["commits"] if c.startswith(rev)]
            if len(hits) == 1:
                return hits[0]
        raise StoreError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def tree(self, commit: str) -> dict[str, dict[str, Any]]:
        return dict(self.data["commits"][commit]["tree"])

    def head_of_writable(self, revision: str) -> tuple[str, str]:
        """(ref table key, current commit) of a branch or PR ref a commit may move."""
        if revision.startswith("refs/pr/"):
            if revision not in self.data["prs"]:
                raise StoreError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return revision, str(self.data["prs"][revision])
        name = revision.removeprefix("refs/heads/")
        if name not in self.data["branches"]:
            raise StoreError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return name, str(self.data["branches"][name])

    def add_commit(
        self, parent: str | None, tree: dict[str, Any], title: str, message: str, author: str
    ) -> str:
        body = {
            "parents": [parent] if parent else [],
            "tree": tree,
            "title": title,
            "message": message,
            "author": author,
            "date": now_iso(),
        }
        oid = hashlib.sha1(
            json.dumps(body, sort_keys=True).encode(), usedforsecurity=False
        ).hexdigest()
        self.data["commits"][oid] = body
        return oid

    def move_ref(self, ref: str, commit: str) -> None:
        if ref.startswith("refs/pr/"):
            self.data["prs"][ref] = commit
        else:
            self.data["branches"][ref] = commit

    def history(self, commit: str) -> list[str]:
        out: list[str] = []
        cur: str | None = commit
        while cur is not None and cur not in out:
            out.append(cur)
            parents = self.data["commits"][cur]["parents"]
            cur = parents[0] if parents else None
        return out


class Store:
    """All repositories of one server root; one lock serialises every state change."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs = Blobs(root / "objects")
        self.xet_dir = root / "xet"
        self.lock = threading.RLock()
        (root / "repos").mkdir(parents=True, exist_ok=True)
        self.xet_dir.mkdir(parents=True, exist_ok=True)

    def _repo_path(self, repo_type: str, repo_id: str) -> Path:
        owner, name = repo_id.split("/", 1)
        return self.root / "repos" / repo_type / owner / f"{name}.json"

    def get(self, repo_type: str, repo_id: str) -> Repo:
        path = self._repo_path(repo_type, repo_id)
        if not path.is_file():
            raise StoreError(404, f"Repository not found: {repo_type}s/{repo_id}", "RepoNotFound")
        return Repo(path, json.loads(path.read_text()))

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return self._repo_path(repo_type, repo_id).is_file()

    def create(self, repo_type: str, repo_id: str, *, private: bool, author: str) -> Repo:
        path = self._repo_path(repo_type, repo_id)
        if path.is_file():
            raise StoreError(409, "You already created this repo", "RepoExists")
        repo = Repo(
            path,
            {
                "id": repo_id,
                "type": repo_type,
                "private": private,
                "created_at": now_iso(),
                "commits": {},
                "branches": {},
                "tags": {},
                "prs": {},
                "discussions": {},
            },
        )
        digest = self.blobs.put_bytes(GITATTRIBUTES)
        tree = {".gitattributes": {"sha256": digest, "size": len(GITATTRIBUTES), "lfs": False}}
        first = repo.add_commit(None, tree, "initial commit", "", author)
        repo.data["branches"]["main"] = first
        repo.save()
        return repo

    def delete(self, repo_type: str, repo_id: str) -> None:
        path = self._repo_path(repo_type, repo_id)
        if not path.is_file():
            raise StoreError(404, f"Repository not found: {repo_type}s/{repo_id}", "RepoNotFound")
        path.unlink()

    def snapshot(self, repo: Repo) -> dict[str, Any]:
        return copy.deepcopy(repo.data)
