"""sha256 of files and folders, with a stat-keyed cache so re-runs do not re-read gigabytes.

The cache key is (absolute path, size, mtime_ns, inode): any rewrite of a file changes at
least one of them, so a cached digest is never served for changed content.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from medrelease.core.atomic import atomic_write_json

CHUNK = 8 * 1024 * 1024


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file_uncached(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class HashCache:
    """A small JSON file mapping file identity to its sha256."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if path is not None and path.is_file():
            try:
                self._entries = json.loads(path.read_text())
            except (OSError, ValueError):
                self._entries = {}

    @staticmethod
    def _key(path: Path) -> tuple[str, dict[str, int]]:
        st = path.stat()
        return str(path.resolve()), {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ino": st.st_ino,
        }

    def sha256(self, path: Path) -> str:
        key, ident = self._key(path)
        with self._lock:
            hit = self._entries.get(key)
        if hit and all(hit.get(k) == v for k, v in ident.items()):
            return str(hit["sha256"])
        digest = sha256_file_uncached(path)
        with self._lock:
            self._entries[key] = {**ident, "sha256": digest}
            self._dirty = True
        return digest

    def save(self) -> None:
        if self.path is not None and self._dirty:
            atomic_write_json(self.path, self._entries)
            self._dirty = False


_default = HashCache(None)


def sha256_file(path: Path, cache: HashCache | None = None) -> str:
    return (cache or _default).sha256(path)


def file_record(path: Path, cache: HashCache | None = None) -> dict[str, Any]:
    return {"sha256": sha256_file(path, cache), "size": path.stat().st_size}


def folder_records(
    folder: Path, cache: HashCache | None = None, *, skip_hidden: bool = True
) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file below `folder`, keyed by POSIX relative path (sorted)."""
    out: dict[str, dict[str, Any]] = {}
    for root, dirs, files in os.walk(folder):
        if skip_hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if skip_hidden and name.startswith("."):
                continue
            p = Path(root) / name
            out[p.relative_to(folder).as_posix()] = file_record(p, cache)
    return dict(sorted(out.items()))


def digest_of(obj: Any) -> str:
    """Stable sha256 of a JSON-able object (used for step input hashes)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())
