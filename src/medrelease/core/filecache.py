"""A per-user cache of facts about large files (sha256, NaN/Inf scan verdict).

Stage checkpoints are reused by many merges while a recipe is iterated, and each merge would
otherwise re-read gigabytes to hash and scan them. The facts are keyed by the file's identity:
resolved path, size, mtime_ns, inode and ctime_ns. Any write changes mtime and ctime, and
ctime cannot be set back from user space (utime() itself bumps it), so a fact is never
served for changed content. The cache never fails a run: unreadable or unwritable cache files
are ignored (the facts are then computed again).

Location: `$MEDRELEASE_CACHE_DIR`, else `$XDG_CACHE_HOME/medrelease`, else
`~/.cache/medrelease`; the file is `file-facts.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from medrelease.core.atomic import atomic_write_json

CACHE_ENV = "MEDRELEASE_CACHE_DIR"
FACTS_FILE = "file-facts.json"
MAX_ENTRIES = 20_000  # ~3 MB of JSON; least recently used entries go first
# Files smaller than this are hashed again rather than remembered: reading them costs less
# than keeping the cache file large.
MIN_CACHED_BYTES = 1024 * 1024
# File timestamps move in clock ticks (milliseconds), so a file rewritten in the same tick
# with the same size keeps its identity. Like git's "racy" index entries, facts about a file
# changed this recently are not remembered: it may still be being written.
RACY_WINDOW_NS = 2_000_000_000


def user_cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "medrelease"


def file_identity(path: Path) -> tuple[str, dict[str, int]]:
    """(resolved path, stat fields that change whenever the content can have changed)."""
    st = path.stat()
    return str(path.resolve()), {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "ino": st.st_ino,
    }


class FileFacts:
    """JSON map: resolved path -> {identity..., "facts": {name: value}, "used": epoch s}."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = _read(path)
        self._dirty: set[str] = set()

    @classmethod
    def for_user(cls) -> FileFacts:
        return cls(user_cache_dir() / FACTS_FILE)

    def get(self, path: Path, name: str) -> Any:
        """The fact `name` recorded for this exact file content, or None."""
        key, ident = file_identity(path)
        with self._lock:
            hit = self._entries.get(key)
            if not hit or any(hit.get(k) != v for k, v in ident.items()):
                return None
            value = hit.get("facts", {}).get(name)
            if value is not None:
                hit["used"] = int(time.time())
                self._dirty.add(key)
            return value

    def put(self, path: Path, name: str, value: Any, ident: dict[str, int] | None = None) -> None:
        """Record a fact; `ident` is the identity seen *before* reading, if the caller has it.

        Passing the pre-read identity means a file rewritten while it was being read gets
        an entry that can never match it again.
        """
        key, now = file_identity(path)
        ident = ident or now
        if ident != now or ident["size"] < MIN_CACHED_BYTES:
            return
        if time.time_ns() - max(ident["mtime_ns"], ident["ctime_ns"]) < RACY_WINDOW_NS:
            return
        with self._lock:
            entry = self._entries.get(key)
            if not entry or any(entry.get(k) != v for k, v in ident.items()):
                entry = {**ident, "facts": {}}
                self._entries[key] = entry
            entry["facts"][name] = value
            entry["used"] = int(time.time())
            self._dirty.add(key)

    def save(self) -> None:
        """Merge our new entries into the file on disk (other processes may have written)."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            ours = {k: self._entries[k] for k in self._dirty if k in self._entries}
            self._dirty.clear()
        merged = {**_read(self.path), **ours}
        if len(merged) > MAX_ENTRIES:
            keep = sorted(merged, key=lambda k: merged[k].get("used", 0))[-MAX_ENTRIES:]
            merged = {k: merged[k] for k in keep}
        with contextlib.suppress(OSError):
            atomic_write_json(self.path, merged)


def _read(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
