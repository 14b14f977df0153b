"""sha256 of files and folders, with stat-keyed caches so re-runs do not re-read gigabytes.

The cache key is (absolute path, size, mtime_ns, ctime_ns, inode): any rewrite of a file
changes at least one of them, so a cached digest is never served for changed content.
Two layers: the release's own `.cache/sha256.json` (every file it hashed) and, for large
files, the per-user `FileFacts` cache (core/filecache.py), so a stage checkpoint hashed by
one release is not read again by the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from typing_extensions import TypedDict  # pydantic reads only this one before Python 3.12

from medrelease.core.atomic import atomic_write_json
from medrelease.core.filecache import FileFacts, file_identity

CHUNK = 8 * 1024 * 1024


class FileRecord(TypedDict):
    """One file a step wrote: `{"<path relative to the release folder>": FileRecord}`.

    Defined here, where it is made (`file_record`); core/manifest.py and `medrelease.records`
    re-export it for the step records."""

    sha256: str
    size: int


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file_uncached(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


_user_facts: FileFacts | None = None
_user_lock = threading.Lock()


def user_facts() -> FileFacts:
    """The per-user cache, read once per process (re-read if MEDRELEASE_CACHE_DIR changes)."""
    global _user_facts
    from medrelease.core.filecache import FACTS_FILE, user_cache_dir

    with _user_lock:
        where = user_cache_dir() / FACTS_FILE
        if _user_facts is None or _user_facts.path != where:
            _user_facts = FileFacts(where)
        return _user_facts


class HashCache:
    """A small JSON file mapping file identity to its sha256 (plus the per-user layer)."""

    def __init__(self, path: Path | None, *, shared: FileFacts | None = None):
        self.path = path
        # a release cache also consults the per-user one; HashCache(None) stays cache-free
        self.shared = shared if shared is not None else (user_facts() if path else None)
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
        return file_identity(path)

    def cached(self, path: Path) -> str | None:
        """The digest if either layer knows this exact file content, without reading it."""
        key, ident = self._key(path)
        with self._lock:
            hit = self._entries.get(key)
        if hit and all(hit.get(k) == v for k, v in ident.items()):
            return str(hit["sha256"])
        shared = self.shared.get(path, "sha256") if self.shared is not None else None
        if isinstance(shared, str):
            with self._lock:
                self._entries[key] = {**ident, "sha256": shared}
                self._dirty = True
            return shared
        return None

    def sha256(self, path: Path) -> str:
        hit = self.cached(path)
        if hit is not None:
            return hit
        _, ident = self._key(path)
        digest = sha256_file_uncached(path)
        self.remember(path, digest, ident)
        return digest

    def remember(
        self, path: Path, digest: str, ident: dict[str, int], *, shared: bool = True
    ) -> None:
        """Record a digest computed elsewhere (e.g. by the one-pass weight scan).

        `ident` is the file's identity taken before it was read: if the file changed since,
        the entry is dropped rather than attached to content it does not describe.
        """
        key, now = self._key(path)
        if now != ident:
            return
        with self._lock:
            self._entries[key] = {**ident, "sha256": digest}
            self._dirty = True
        if shared and self.shared is not None:
            self.shared.put(path, "sha256", digest, ident)

    def moved(self, old_root: Path, new_root: Path) -> None:
        """Carry entries over after `old_root` was renamed to `new_root`.

        Renaming a folder keeps its files' inodes, sizes, mtimes and ctimes, so an entry is
        carried only when all of them still match the file at its new path.
        """
        old_prefix = str(old_root.resolve()) + os.sep
        with self._lock:
            moved = {k: v for k, v in self._entries.items() if k.startswith(old_prefix)}
        for key, entry in moved.items():
            new_path = new_root / key[len(old_prefix) :]
            try:
                new_key, ident = self._key(new_path)
            except OSError:
                continue
            if all(entry.get(k) == v for k, v in ident.items()):
                with self._lock:
                    self._entries[new_key] = {**ident, "sha256": entry["sha256"]}
                    self._entries.pop(key, None)
                    self._dirty = True
                if self.shared is not None:
                    self.shared.put(new_path, "sha256", entry["sha256"], ident)

    def save(self) -> None:
        if self.path is not None and self._dirty:
            atomic_write_json(self.path, self._entries)
            self._dirty = False
        if self.shared is not None:
            self.shared.save()


class FileChanged(Exception):
    """A file's identity changed between two reads of it (something else is writing it)."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path


class BackgroundHashes:
    """sha256 of files in a thread, recorded in a HashCache when done.

    Used for inputs whose content was already checked: hashing them is bookkeeping, so it
    can overlap with the work that reads them anyway (mergekit), where a core is mostly idle.
    Each file's identity is taken before anything read it; `wait()` raises FileChanged if a
    file no longer matches it, so a digest always describes the content that was checked.
    """

    def __init__(self, files: list[tuple[Path, dict[str, int]]], cache: HashCache):
        self.files = files
        self.cache = cache
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mr-input-hashes", daemon=True)
        if files:
            self._thread.start()

    def _run(self) -> None:
        try:
            for path, ident in self.files:
                digest = sha256_file_uncached(path)
                if self._key(path) != ident:
                    raise FileChanged(path)
                self.cache.remember(path, digest, ident)
        except BaseException as exc:  # handed to the caller by wait()
            self._error = exc

    @staticmethod
    def _key(path: Path) -> dict[str, int]:
        return file_identity(path)[1]

    def wait(self) -> None:
        if self.files:
            self._thread.join()
        if self._error is not None:
            raise self._error


_default = HashCache(None)


def sha256_file(path: Path, cache: HashCache | None = None) -> str:
    return (cache or _default).sha256(path)


def file_record(path: Path, cache: HashCache | None = None) -> FileRecord:
    return {"sha256": sha256_file(path, cache), "size": path.stat().st_size}


def folder_records(
    folder: Path, cache: HashCache | None = None, *, skip_hidden: bool = True
) -> dict[str, FileRecord]:
    """sha256 and size of every file below `folder`, keyed by POSIX relative path (sorted)."""
    out: dict[str, FileRecord] = {}
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


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def weights_digest(outputs: dict[str, Any]) -> str:
    """One digest of a merged model's weight files (file name -> sha256) from a merge record's
    `outputs`: a sweep trial's and the adopted recipe's merge are the same weights when equal."""
    files = {
        name.split("/", 1)[-1]: rec["sha256"]
        for name, rec in outputs.items()
        if name.endswith(WEIGHT_SUFFIXES)
    }
    return "sha256:" + digest_of(files)
