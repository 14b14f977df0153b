"""Downloads: GET/HEAD /[{type}s/]{owner}/{name}/resolve/{rev}/{path}, with byte ranges.

The headers are the ones huggingface_hub reads to name and check a download: X-Repo-Commit,
ETag (git sha1, or sha256 for LFS files) and, for LFS files, X-Linked-Etag / X-Linked-Size.
"""

from __future__ import annotations

import re
from pathlib import Path

from medrelease.localhub.handler import BaseHandler
from medrelease.localhub.store import StoreError, entry_oid

# One range; positions of more than 19 digits (past 2**63) are not ranges this server has.
RANGE = re.compile(r"bytes\s*=\s*(\d{0,19})\s*-\s*(\d{0,19})", re.IGNORECASE)


def resolve(h: BaseHandler, repo_type: str, repo_id: str, rev: str, path: str) -> None:
    store = h.state.store
    with store.lock:
        repo = store.get(repo_type, repo_id)
        h.check_visible(repo, repo_id)
        commit = repo.resolve(rev)
        entry = repo.tree(commit).get(path)
    if entry is None:
        raise StoreError(404, f"{path} does not exist on {rev}", "EntryNotFound")
    etag = entry["sha256"] if entry.get("lfs") else entry_oid(entry, store.blobs)
    size = entry["size"]
    headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
    if entry.get("lfs"):
        headers["X-Linked-Etag"] = f'"{etag}"'
        headers["X-Linked-Size"] = str(size)
    try:
        wanted = byte_range(h.headers.get("Range"), size)
    except RangeNotSatisfiable:
        # As S3 (behind the Hub) answers: none of the file, and its size to retry with.
        msg = f"Range {h.headers.get('Range')} starts past the end of {path} ({size} bytes)"
        return h.reply_error(416, msg, headers={"Content-Range": f"bytes */{size}"})
    start, end, status = 0, size - 1, 200
    if wanted is not None:
        (start, end), status = wanted, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1
    h.send_head(status, length, content_type="application/octet-stream", headers=headers)
    if h.command != "HEAD":
        _stream(h, store.blobs.path(entry["sha256"]), start, length)


class RangeNotSatisfiable(Exception):
    """A valid byte range that starts at or after the end of the file (RFC 9110 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte positions a `Range` header asks for, following RFC
    9110 §14.1.2 as the Hub (S3) does: a last position past the end is capped at the end,
    a suffix `bytes=-N` is the last N bytes. None for no range to honour (no header, several
    ranges, last before first, another unit): the whole file goes out with 200, which the RFC
    allows. Raises RangeNotSatisfiable when the range starts at or past the end."""
    match = RANGE.fullmatch((header or "").strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # suffix range: the last N bytes
        if int(last) == 0:
            raise RangeNotSatisfiable
        return (max(0, size - int(last)), size - 1) if size else None
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # an invalid range-spec is ignored, not refused
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(end, size - 1)


def _stream(h: BaseHandler, blob: Path, start: int, length: int) -> None:
    """Send `length` bytes of `blob` from `start`, a megabyte at a time."""
    with open(blob, "rb") as fh:
        fh.seek(start)
        remaining = length
        while remaining > 0:
            chunk = fh.read(min(1 << 20, remaining))
            if not chunk:
                # The blob is shorter than its record: the promised length cannot be met,
                # so end the connection rather than leave the client waiting for the rest.
                h.close_connection = True
                break
            h.wfile.write(chunk)
            remaining -= len(chunk)
