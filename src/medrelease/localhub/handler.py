"""HTTP plumbing of the local Hub: server state, request bodies, replies, errors, tokens.

`BaseHandler` is what every endpoint module (`api_*.py`) works with: it reads the request
body, answers with JSON or bytes, refuses with the Hub's error headers and knows the caller.
The routing and the fault injection live in `server.HubHandler`, which builds on it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from medrelease.localhub.store import Repo, Store, StoreError

BAD_TOKEN_MESSAGE = "Invalid credentials in Authorization header"
OID = re.compile(r"[0-9a-f]{64}")


class MalformedPath(Exception):
    """A request path that names no endpoint: a segment is missing, extra or not of its kind.

    Endpoints raise it while they take their path apart (`segments`, `oid_segment`,
    `int_segment`); the dispatcher answers it with the Hub's JSON error (404, or 400 for a
    segment that is there but not a number), reads off any body and keeps the connection.
    It is not a StoreError on purpose: code that treats a StoreError as "not found yet"
    (preupload on a new branch) must not swallow a bad path.
    """

    def __init__(self, message: str, status: int = 404):
        super().__init__(message)
        self.status = status
        self.message = message


def segments(args: list[str], count: int, usage: str, *, exact: bool = False) -> list[str]:
    """`args` when it has at least `count` segments (exactly `count` with `exact`)."""
    if len(args) < count or (exact and len(args) != count):
        raise MalformedPath(f"malformed path: expected {usage}")
    return args


def oid_segment(value: str, usage: str) -> str:
    """A sha256 in a path (it names files under the store root, so nothing else goes)."""
    if not OID.fullmatch(value):
        raise MalformedPath(f"malformed path: {value!r} is not a sha256 in {usage}")
    return value


def int_segment(value: str, what: str) -> int:
    """A positive integer path segment; any other text is a 400, as the Hub answers."""
    if not (value.isascii() and value.isdigit() and len(value) < 10 and int(value) > 0):
        msg = f"malformed path: {what} must be a positive integer, not {value!r}"
        raise MalformedPath(msg, 400)
    return int(value)


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


def _header_value(value: str) -> str:
    """One header line's worth of `value`: error messages quote request paths, and a
    decoded %0D%0A or non-Latin-1 character would split or break the header block."""
    value = value.replace("\r", " ").replace("\n", " ")
    return value.encode("latin-1", "backslashreplace").decode("latin-1")


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "medrelease-localhub"
    state: HubState  # set on the subclass made by `make_server`
    # Per request, set by `server.HubHandler._dispatch` before any endpoint runs:
    query: dict[str, str]  # query string, last value of each key
    user: str | None  # the caller's name, None without a token
    body_consumed: bool  # whether the request body has been read off the socket
    replied: bool  # whether a status line has gone out (no second reply may follow it)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines would include upload signatures, and tests stay quiet."""

    # --- request body -----------------------------------------------------------------
    def content_length(self) -> int:
        """The request's Content-Length (0 without one). A bad one is a 400, and the
        connection closes after it: where this body ends, and the next request starts,
        is unknown."""
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not raw.isascii() or not raw.isdigit():
            self.close_connection = True
            raise StoreError(400, f"invalid Content-Length header {raw!r}")
        return int(raw)

    def read_body(self) -> bytes:
        self.body_consumed = True
        length = self.content_length()
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

    def read_json(self) -> Any:
        raw = self.read_body()
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise StoreError(400, "request body is not valid JSON") from None

    def read_body_to(self, tmp: Path) -> None:
        """Stream a (possibly large) upload body into `tmp` without holding it in memory."""
        self.body_consumed = True
        length = self.content_length()
        with open(tmp, "wb") as fh:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(1 << 20, remaining))
                if not chunk:
                    raise StoreError(400, "upload ended early")
                fh.write(chunk)
                remaining -= len(chunk)

    def discard_unread_body(self) -> None:
        """Keep the connection usable after an early error: unread body bytes would be
        parsed as the next request. Small bodies are drained; large ones close the socket."""
        if self.body_consumed:
            return
        self.body_consumed = True
        try:
            length = self.content_length()
        except StoreError:
            return  # content_length() closes the connection
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if chunked or length > 8 << 20:
            self.close_connection = True
        elif length:
            self.rfile.read(length)

    # --- replies ----------------------------------------------------------------------
    def send_head(
        self,
        status: int,
        length: int,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The status line and headers of every reply (JSON, errors, file bodies alike), so
        that all of them say `Connection: close` when the connection ends after them."""
        self.replied = True
        self.send_response(status)
        if self.close_connection:
            # Say so (also when the client asked for it): a client that pools this
            # connection would otherwise send its next request into a socket we are about
            # to close ("Server disconnected").
            self.send_header("Connection", "close")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for key, value in (headers or {}).items():
            self.send_header(key, _header_value(value))
        self.end_headers()

    def reply(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_head(status, len(body), content_type=content_type, headers=headers)
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def reply_json(
        self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.reply(status, json.dumps(obj).encode(), headers=headers)

    def reply_error(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The Hub's error shape: huggingface_hub reads X-Error-Message / X-Error-Code."""
        all_headers = {"X-Error-Message": message, **(headers or {})}
        if code:
            all_headers["X-Error-Code"] = code
        self.reply(status, json.dumps({"error": message}).encode(), headers=all_headers)

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.state.base_url}/{prefix}{repo_id}"

    # --- who is asking ----------------------------------------------------------------
    def authenticate(self) -> str | None:
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

    def require_user(self) -> str:
        if self.user is None:
            raise StoreError(401, "You must be authenticated to write (send a token)")
        return self.user

    def check_visible(self, repo: Repo, repo_id: str) -> None:
        """A private repo does not exist for an anonymous caller (as on the Hub)."""
        if self.user is None and repo.data.get("private"):
            raise StoreError(401, f"Repository not found: {repo_id}", "RepoNotFound")
