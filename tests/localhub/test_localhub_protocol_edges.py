"""The local Hub at the edges of HTTP: byte ranges past the end of a file, malformed paths,
endpoints that break, and `Connection: close`, over real sockets.

Each case is a regression: a range past the end promised more bytes than it sent (the client
hung until its timeout), a path missing a segment killed the connection with a traceback, and
`resolve` replies did not echo `Connection: close`. Raw requests (http.client, plain sockets)
check the exact status, headers and bytes; huggingface_hub's own readers check that a real
client still gets the right content.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers import HUB_TOKEN

REPO = "alice/edges"
SIZE = 512
OID = "ab" * 32  # a well-formed sha256 that no upload URL was signed for
AUTH = {"Authorization": f"Bearer {HUB_TOKEN}"}


@dataclass
class Hub:
    url: str
    port: int
    text: bytes  # 512 bytes in a regular (git) file, text.txt
    weights: bytes  # 512 bytes in an LFS file, w.bin

    def connect(self) -> http.client.HTTPConnection:
        # A short timeout: a reply that promises more bytes than it sends fails the test
        # instead of hanging it.
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)


@pytest.fixture
def hub(hub: Any, lfs_only: None) -> Hub:
    """The shared local Hub (tests/conftest.py) holding text.txt and w.bin in REPO; downloads
    are plain HTTP (no Xet)."""
    from urllib.parse import urlsplit

    from huggingface_hub import CommitOperationAdd, HfApi

    text = bytes(ord("a") + i % 26 for i in range(SIZE))
    weights = os.urandom(SIZE)
    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    api.create_repo(REPO)
    ops = [CommitOperationAdd("text.txt", text), CommitOperationAdd("w.bin", weights)]
    api.create_commit(REPO, ops, commit_message="files")
    port = urlsplit(hub.url).port
    assert port is not None
    return Hub(hub.url, port, text, weights)


def get(
    conn: http.client.HTTPConnection,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp, resp.read()


def assert_still_usable(conn: http.client.HTTPConnection, hub: Hub) -> None:
    """The same socket answers the next request: nothing of the last exchange was left over."""
    sock = conn.sock
    assert sock is not None, "the server closed the connection"
    resp, body = get(conn, f"/{REPO}/resolve/main/text.txt")
    assert (resp.status, body) == (200, hub.text)
    assert conn.sock is sock  # kept alive, not silently reopened


def file_path(name: str) -> str:
    return f"/{REPO}/resolve/main/{name}"


# --- 1. byte ranges (RFC 9110 §14) --------------------------------------------------------
@pytest.mark.parametrize("name", ["text.txt", "w.bin"])
def test_range_past_the_end_is_capped_at_the_last_byte(hub: Hub, name: str) -> None:
    data = hub.text if name == "text.txt" else hub.weights
    conn = hub.connect()
    resp, body = get(conn, file_path(name), {"Range": "bytes=500-600"})
    assert resp.status == 206
    assert resp.getheader("Content-Range") == "bytes 500-511/512"
    assert resp.getheader("Content-Length") == "12"
    assert body == data[500:]
    assert_still_usable(conn, hub)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("spec", ["bytes=512-", "bytes=512-600", "bytes=600-700", "bytes=-0"])
def test_range_starting_past_the_end_is_416(hub: Hub, spec: str, method: str) -> None:
    conn = hub.connect()
    resp, body = get(conn, file_path("w.bin"), {"Range": spec}, method=method)
    assert resp.status == 416
    assert resp.getheader("Content-Range") == "bytes */512"
    message = resp.getheader("X-Error-Message")
    assert message is not None and "past the end" in message and "512 bytes" in message
    if method == "GET":
        assert json.loads(body) == {"error": message}
    else:
        assert body == b""
    assert_still_usable(conn, hub)


@pytest.mark.parametrize(
    ("spec", "status", "content_range", "part"),
    [
        ("bytes=0-0", 206, "bytes 0-0/512", slice(0, 1)),
        ("bytes=0-", 206, "bytes 0-511/512", slice(0, None)),
        ("bytes=511-511", 206, "bytes 511-511/512", slice(511, None)),
        ("bytes=-12", 206, "bytes 500-511/512", slice(500, None)),  # suffix: the last 12
        ("bytes=-1000", 206, "bytes 0-511/512", slice(0, None)),  # suffix longer than file
        ("bytes=10-5", 200, None, slice(0, None)),  # invalid spec: ignored, whole file
        ("bytes=0-1,5-6", 200, None, slice(0, None)),  # several ranges: whole file
        ("items=0-5", 200, None, slice(0, None)),  # another unit: whole file
    ],
)
def test_ranges_inside_the_file(
    hub: Hub, spec: str, status: int, content_range: str | None, part: slice
) -> None:
    conn = hub.connect()
    resp, body = get(conn, file_path("text.txt"), {"Range": spec})
    assert resp.status == status
    assert resp.getheader("Content-Range") == content_range
    assert body == hub.text[part]
    assert resp.getheader("Content-Length") == str(len(body))
    assert_still_usable(conn, hub)


def test_real_client_reads_at_and_past_the_end(hub: Hub, tmp_path: Path) -> None:
    """huggingface_hub's readers: a resumed download (Range: bytes=N-), a file read from
    inside to past its end, a 416 taken as the Hub's error (HfFileSystem's streaming reader
    treats it as EOF), and a plain hf_hub_download, all against the bytes committed."""
    import httpx
    from huggingface_hub import HfFileSystem, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import hf_raise_for_status

    url = f"{hub.url}{file_path('w.bin')}"
    target = tmp_path / "resumed.bin"
    with open(target, "wb") as fh:
        fh.write(hub.weights[:500])
        http_get(url, fh, resume_size=500, expected_size=SIZE)
    assert target.read_bytes() == hub.weights

    fs = HfFileSystem(endpoint=hub.url, token=HUB_TOKEN)
    with fs.open(f"{REPO}/w.bin", "rb") as fh:
        fh.seek(500)
        assert fh.read(100) == hub.weights[500:]
    assert fs.cat_file(f"{REPO}/w.bin", start=500, end=600) == hub.weights[500:]

    with pytest.raises(HfHubHTTPError) as err:
        hf_raise_for_status(httpx.get(url, headers={"Range": f"bytes={SIZE}-"}, timeout=5))
    assert err.value.response.status_code == 416
    assert err.value.response.headers["Content-Range"] == f"bytes */{SIZE}"

    for name, data in (("text.txt", hub.text), ("w.bin", hub.weights)):
        got = hf_hub_download(
            REPO, name, endpoint=hub.url, token=HUB_TOKEN, cache_dir=tmp_path / "c"
        )
        assert Path(got).read_bytes() == data


# --- 2. malformed paths -------------------------------------------------------------------
MALFORMED = [
    ("GET", f"/api/models/{REPO}/tree", 404),
    ("GET", f"/api/models/{REPO}/revision", 404),
    ("POST", f"/api/models/{REPO}/paths-info", 404),
    ("POST", f"/api/models/{REPO}/preupload", 404),
    ("POST", f"/api/models/{REPO}/commit", 404),
    ("POST", f"/api/models/{REPO}/tag", 404),
    ("POST", f"/api/models/{REPO}/branch", 404),
    ("PUT", "/_lfs/upload", 404),
    ("PUT", f"/_lfs/upload/{OID}/extra", 404),
    ("PUT", "/_lfs/upload/not-a-sha256", 404),
    ("PUT", f"/_lfs/part/{OID}", 404),
    ("PUT", f"/_lfs/part/{OID}/x", 400),
    ("PUT", f"/_lfs/part/{OID}/0", 400),
    ("PUT", f"/_lfs/part/{OID}/1/2", 404),
    ("POST", "/_lfs/complete", 404),
    ("POST", "/_lfs/verify", 404),
]


@pytest.mark.parametrize(("method", "path", "status"), MALFORMED)
def test_malformed_path_is_a_clean_json_error_and_keeps_the_connection(
    hub: Hub,
    method: str,
    path: str,
    status: int,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = hub.connect()
    body = None if method == "GET" else b'{"some": "body the server must read off"}'
    resp, reply = get(conn, path + "?sig=x", {**AUTH}, method=method, body=body)
    assert resp.status == status
    message = resp.getheader("X-Error-Message")
    assert message is not None and message.startswith("malformed path: ")
    assert json.loads(reply) == {"error": message}
    assert resp.getheader("Connection") is None  # keep-alive
    assert_still_usable(conn, hub)
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_well_formed_paths_still_work_through_the_client(hub: Hub) -> None:
    """The stricter parsing accepts what huggingface_hub sends: tree with and without a
    folder, info at a revision, paths-info, tags and branches."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    assert sorted(f.path for f in api.list_repo_tree(REPO)) == [
        ".gitattributes",
        "text.txt",
        "w.bin",
    ]
    head = api.model_info(REPO).sha
    assert head is not None
    assert api.model_info(REPO, revision=head).sha == head
    assert [p.path for p in api.get_paths_info(REPO, ["w.bin"])] == ["w.bin"]
    api.create_tag(REPO, tag="v1")
    api.create_branch(REPO, branch="dev")
    refs = api.list_repo_refs(REPO)
    assert [t.name for t in refs.tags] == ["v1"]
    assert sorted(b.name for b in refs.branches) == ["dev", "main"]


def test_non_numeric_tree_cursor_is_400(hub: Hub) -> None:
    conn = hub.connect()
    resp, body = get(conn, f"/api/models/{REPO}/tree/main?cursor=abc")
    assert resp.status == 400
    assert json.loads(body) == {"error": "cursor must be a number, not 'abc'"}
    assert_still_usable(conn, hub)


# --- 2b. an endpoint that breaks ----------------------------------------------------------
def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "medrelease.localhub"]


def test_endpoint_bug_is_a_500_json_error_and_one_log_line(
    hub: Hub,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from medrelease.localhub import server

    def broken(h: Any, repo: Any, args: list[str]) -> None:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setitem(server.REPO_ROUTES, ("GET", "refs"), broken)
    monkeypatch.setitem(server.REPO_ROUTES, ("POST", "preupload"), broken)
    conn = hub.connect()
    resp, body = get(conn, f"/api/models/{REPO}/refs?secret=sig123")
    assert resp.status == 500
    assert json.loads(body) == {"error": "internal error in the local Hub (RuntimeError)"}
    assert resp.getheader("Connection") is None
    assert_still_usable(conn, hub)
    # A body the endpoint never read is drained, so the connection stays usable too.
    resp, body = get(conn, f"/api/models/{REPO}/preupload/main", AUTH, "POST", b'{"files": []}')
    assert resp.status == 500
    assert_still_usable(conn, hub)

    records = _errors(caplog)
    assert [r.levelno for r in records] == [logging.ERROR, logging.ERROR]
    first = records[0].getMessage()
    assert (
        first == f"localhub: GET /api/models/{REPO}/refs failed: RuntimeError: a bug over two lines"
    )
    assert "sig123" not in first  # the query (upload signatures) stays out of the log
    assert "Traceback" not in capfd.readouterr().err


def test_endpoint_bug_after_reading_the_body_closes_the_connection(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from medrelease.localhub import server

    def broken(h: Any, repo: Any, args: list[str]) -> None:
        h.read_body()
        raise KeyError("files")

    monkeypatch.setitem(server.REPO_ROUTES, ("POST", "preupload"), broken)
    conn = hub.connect()
    resp, body = get(conn, f"/api/models/{REPO}/preupload/main", AUTH, "POST", b"{}")
    assert resp.status == 500
    assert resp.getheader("Connection") == "close"
    assert json.loads(body) == {"error": "internal error in the local Hub (KeyError)"}
    assert len(_errors(caplog)) == 1


def test_endpoint_bug_mid_reply_ends_the_connection_without_a_second_reply(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Once headers are out, a 500 would be read as the rest of the first reply: the server
    closes the connection instead, so the client sees a short body, not a hang or garbage."""
    from medrelease.localhub import server

    def broken(h: Any, repo: Any, args: list[str]) -> None:
        h.send_head(200, 10)
        h.wfile.write(b"abc")
        raise OSError("disk went away")

    monkeypatch.setitem(server.REPO_ROUTES, ("GET", "refs"), broken)
    conn = hub.connect()
    conn.request("GET", f"/api/models/{REPO}/refs")
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead) as short:
        resp.read()
    assert short.value.partial == b"abc"
    assert len(_errors(caplog)) == 1
    resp, body = get(hub.connect(), file_path("text.txt"))  # the server itself carries on
    assert (resp.status, body) == (200, hub.text)


# --- 3. Connection: close on every kind of reply ------------------------------------------
def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request and read until the server closes the socket (a timeout fails)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("method", "path", "extra", "status"),
    [
        ("GET", file_path("w.bin"), "", 200),
        ("HEAD", file_path("w.bin"), "", 200),
        ("GET", file_path("text.txt"), "Range: bytes=500-600\r\n", 206),
        ("GET", file_path("text.txt"), "Range: bytes=600-\r\n", 416),
        ("GET", file_path("missing.txt"), "", 404),
        ("GET", f"/api/models/{REPO}", "", 200),
        ("GET", "/api/models/alice/nope", "", 404),
        ("GET", f"/api/models/{REPO}/tree", "", 404),
        ("PUT", f"/_lfs/part/{OID}/x", "", 400),
    ],
)
def test_connection_close_is_echoed_on_every_reply(
    hub: Hub, method: str, path: str, extra: str, status: int
) -> None:
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
        f"Authorization: Bearer {HUB_TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    got, headers, body = raw_exchange(hub.port, request.encode())
    assert got == status
    assert headers.get("connection") == "close"
    assert len(body) == (0 if method == "HEAD" else int(headers["content-length"]))


def test_connection_close_is_echoed_on_a_500(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from medrelease.localhub import server

    def broken(h: Any, repo: Any, args: list[str]) -> None:
        raise ValueError("boom")

    monkeypatch.setitem(server.REPO_ROUTES, ("GET", "refs"), broken)
    request = f"GET /api/models/{REPO}/refs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, headers, body = raw_exchange(hub.port, request.encode())
    assert (status, headers.get("connection")) == (500, "close")
    assert json.loads(body) == {"error": "internal error in the local Hub (ValueError)"}
