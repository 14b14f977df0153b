"""Large files: the LFS batch API, signed upload URLs (basic and multipart), verify, and
the Xet tokens that send hf_xet to the local CAS folder.

    POST /{owner}/{name}.git/info/lfs/objects/batch   -> upload actions per missing object
    PUT  /_lfs/upload/{oid}?sig=                       one-shot upload
    PUT  /_lfs/part/{oid}/{n}?sig=, POST /_lfs/complete/{oid}?sig=   multipart upload
    POST /_lfs/verify/{oid}?sig=                       the object is there, with its size
    GET  /api/{type}s/{id}/xet-write-token|xet-read-token/{rev}

Upload URLs carry an HMAC of the oid (`HubState.sign`), so only URLs this server handed
out are accepted. Every body is checked against its sha256 before it is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from pathlib import Path
from typing import Any

from medrelease.localhub.handler import BaseHandler, int_segment, oid_segment, segments
from medrelease.localhub.store import Repo, StoreError


def batch(h: BaseHandler, repo_type: str, repo_id: str) -> None:
    h.require_user()
    with h.state.store.lock:
        h.state.store.get(repo_type, repo_id)
    body = h.read_json()
    if body.get("operation") != "upload":
        raise StoreError(400, "only LFS uploads are supported")
    out = []
    for obj in body.get("objects", []):
        oid, size = str(obj["oid"]), int(obj["size"])
        if not re.fullmatch(r"[0-9a-f]{64}", oid):
            raise StoreError(400, f"invalid LFS oid {oid!r}")
        item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
        if not h.state.store.blobs.has(oid):
            item["actions"] = _upload_actions(h, oid, size)
        out.append(item)
    h.reply_json({"transfer": "basic", "objects": out, "hash_algo": "sha256"})


def _upload_actions(h: BaseHandler, oid: str, size: int) -> dict[str, Any]:
    """Signed URLs for one object: one PUT, or numbered parts above the multipart size."""
    base = h.state.base_url
    sig = h.state.sign(oid)
    verify = {"href": f"{base}/_lfs/verify/{oid}?sig={sig}"}
    if size > h.state.multipart_threshold:
        chunk = h.state.multipart_chunk
        n = -(-size // chunk)
        header: dict[str, str] = {"chunk_size": str(chunk)}
        for i in range(1, n + 1):
            header[str(i)] = f"{base}/_lfs/part/{oid}/{i}?sig={sig}"
        upload = {"href": f"{base}/_lfs/complete/{oid}?sig={sig}", "header": header}
    else:
        upload = {"href": f"{base}/_lfs/upload/{oid}?sig={sig}"}
    return {"upload": upload, "verify": verify}


def _check_sig(h: BaseHandler, oid: str) -> None:
    if not hmac.compare_digest(h.query.get("sig", ""), h.state.sign(oid)):
        raise StoreError(403, "upload URL signature is invalid")


def _parts_dir(h: BaseHandler, oid: str) -> Path:
    return h.state.store.root / "objects" / ".parts" / oid


def _oid(rest: list[str], usage: str) -> str:
    """The one segment of `/_lfs/{action}/{oid}`: a sha256, nothing before or after."""
    (oid,) = segments(rest, 1, usage, exact=True)
    return oid_segment(oid, usage)


def put(h: BaseHandler, rest: list[str]) -> None:
    oid = _oid(rest, "/_lfs/upload/{oid}")
    _check_sig(h, oid)
    blobs = h.state.store.blobs
    tmp = blobs.temp_path()
    try:
        h.read_body_to(tmp)
        blobs.put_file(tmp, oid)
    finally:
        tmp.unlink(missing_ok=True)
    h.state.uploads[oid] += 1
    h.reply(200)


def put_part(h: BaseHandler, rest: list[str]) -> None:
    usage = "/_lfs/part/{oid}/{part number}"
    oid, raw_number = segments(rest, 2, usage, exact=True)
    oid, number = oid_segment(oid, usage), int_segment(raw_number, "part number")
    _check_sig(h, oid)
    folder = _parts_dir(h, oid)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{number}.tmp"
    h.read_body_to(tmp)
    etag = hashlib.md5(tmp.read_bytes(), usedforsecurity=False).hexdigest()
    tmp.replace(folder / str(number))
    h.reply(200, headers={"ETag": f'"{etag}"'})


def complete(h: BaseHandler, rest: list[str]) -> None:
    """Join the parts in order (each checked against the ETag the client got for it)."""
    oid = _oid(rest, "/_lfs/complete/{oid}")
    _check_sig(h, oid)
    body = h.read_json()
    folder = _parts_dir(h, oid)
    blobs = h.state.store.blobs
    tmp = blobs.temp_path()
    try:
        with open(tmp, "wb") as out:
            for number, expected in _parts(body):
                data = (folder / str(number)).read_bytes()
                etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
                if expected != etag:
                    raise StoreError(400, f"part {number} etag mismatch")
                out.write(data)
        blobs.put_file(tmp, oid)
    except FileNotFoundError:
        raise StoreError(400, f"multipart upload of {oid} is missing parts") from None
    finally:
        tmp.unlink(missing_ok=True)
    for part_file in folder.glob("*"):
        part_file.unlink()
    folder.rmdir()
    h.state.uploads[oid] += 1
    h.reply(200)


def _parts(body: Any) -> list[tuple[int, str]]:
    """(part number, etag) of each part the completion lists, in order; a 400 if malformed."""
    try:
        parts = [(int(p["partNumber"]), str(p["etag"]).strip('"')) for p in body["parts"]]
    except (KeyError, TypeError, ValueError):
        raise StoreError(400, "multipart completion must list parts: partNumber, etag") from None
    return sorted(parts)


def verify(h: BaseHandler, rest: list[str]) -> None:
    oid = _oid(rest, "/_lfs/verify/{oid}")
    _check_sig(h, oid)
    body = h.read_json()
    path = h.state.store.blobs.path(oid)
    if not path.is_file() or path.stat().st_size != int(body.get("size", -1)):
        raise StoreError(404, f"LFS object {oid} was not uploaded")
    h.reply(200)


# --- Xet: GET /api/{type}s/{id}/xet-{write,read}-token/{rev} ------------------------------
def xet_write_token(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    h.require_user()
    _xet_token(h, "xet-write-token")


def xet_read_token(h: BaseHandler, repo: Repo, args: list[str]) -> None:
    _xet_token(h, "xet-read-token")


def _xet_token(h: BaseHandler, action: str) -> None:
    """A token whose casUrl `local://DIR` makes hf_xet read and write chunks in DIR."""
    h.state.events[action] += 1
    cas = f"local://{h.state.store.xet_dir.resolve()}"
    exp = int(time.time()) + 3600
    token = "local-xet-" + secrets.token_hex(8)
    headers = {
        "X-Xet-Cas-Url": cas,
        "X-Xet-Access-Token": token,
        "X-Xet-Token-Expiration": str(exp),
    }
    h.reply_json({"accessToken": token, "exp": exp, "casUrl": cas}, headers=headers)
