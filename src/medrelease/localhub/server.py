"""A Hub-API-compatible HTTP server for publishing and downloading, on 127.0.0.1 only.

It speaks the subset of the Hugging Face Hub API that `huggingface_hub` uses to create repos,
upload (preupload, LFS basic/multipart/verify, Xet through a local CAS folder), commit
atomically (ndjson, `parentCommit` -> 412), tag, branch, open pull requests, list refs,
commits and trees, report model info, and serve `resolve` downloads. The real client talks
to it over real HTTP, so tests and the offline demo exercise the same code path as the Hub.

This module is the routing: the tables below map each request to one endpoint function, and
each `api_*.py` module implements one piece of the protocol. `handler.py` has the plumbing
(bodies, replies, errors, tokens); `store.py` the on-disk repos and blobs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from medrelease.localhub import api_commit, api_discussions, api_files, api_lfs, api_refs
from medrelease.localhub import api_repos as repos
from medrelease.localhub.handler import (
    BAD_TOKEN_MESSAGE,
    BaseHandler,
    Fault,
    HubState,
    MalformedPath,
)
from medrelease.localhub.store import Repo, Store, StoreError

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
TREE_PAGE = repos.TREE_PAGE

PathEndpoint = Callable[[BaseHandler, list[str]], None]
RepoEndpoint = Callable[[BaseHandler, Repo, list[str]], None]

# Fixed path prefixes, tried in order; the endpoint gets the segments after the prefix.
# None: any method.
PREFIX_ROUTES: tuple[tuple[tuple[str, ...], frozenset[str] | None, PathEndpoint], ...] = (
    (("api", "agent-harnesses"), None, repos.agent_harnesses),
    (("api", "whoami-v2"), None, repos.whoami),
    (("api", "validate-yaml"), frozenset({"POST"}), repos.validate_yaml),
    (("api", "repos", "create"), frozenset({"POST"}), repos.create_repo),
    (("api", "repos", "delete"), frozenset({"POST", "DELETE"}), repos.delete_repo),
    (("_lfs", "upload"), frozenset({"PUT"}), api_lfs.put),
    (("_lfs", "part"), frozenset({"PUT"}), api_lfs.put_part),
    (("_lfs", "complete"), frozenset({"POST"}), api_lfs.complete),
    (("_lfs", "verify"), frozenset({"POST"}), api_lfs.verify),
)

# /api/{models,datasets,spaces}/{owner}/{name}/{action}/...: (method, action) -> endpoint,
# which gets the repo (looked up and access-checked under the store lock) and the segments
# after the action. Method "*": any method (the endpoint tells them apart).
REPO_ROUTES: dict[tuple[str, str], RepoEndpoint] = {
    ("GET", ""): repos.info,
    ("GET", "revision"): repos.info_at_revision,
    ("GET", "refs"): repos.refs,
    ("GET", "commits"): repos.commits,
    ("GET", "tree"): repos.tree,
    ("POST", "paths-info"): repos.paths_info,
    ("PUT", "settings"): repos.settings,
    ("POST", "preupload"): api_commit.preupload,
    ("POST", "commit"): api_commit.commit,
    ("GET", "xet-write-token"): api_lfs.xet_write_token,
    ("GET", "xet-read-token"): api_lfs.xet_read_token,
    ("*", "tag"): api_refs.tag,
    ("*", "branch"): api_refs.branch,
    ("*", "discussions"): api_discussions.discussions,
}

LFS_BATCH = ["info", "lfs", "objects", "batch"]

log = logging.getLogger("medrelease.localhub")


class HubHandler(BaseHandler):
    """One connection: finds the endpoint for each request and turns refusals into errors."""

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

    def _dispatch(self, method: str) -> None:
        state = self.state
        self.body_consumed = False
        self.replied = False
        self.query = {}
        try:
            split = urlsplit(self.path)
            self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            parts = [unquote(p) for p in split.path.split("/") if p]
            for fault in state.faults:
                hit = fault.times > 0 and fault.path_part in split.path
                if hit and fault.method in (None, method):
                    fault.times -= 1
                    self.read_body()
                    self.reply_error(fault.status, f"injected fault {fault.status}")
                    return
            self.user = self.authenticate()
            self._route(method, parts)
        except StoreError as err:
            self._refuse(err.status, err.message, err.code)
        except MalformedPath as err:
            self._refuse(err.status, err.message)
        except ConnectionError:
            self.close_connection = True  # the client went away: no one to answer
        except Exception as exc:
            # A bug in one endpoint: answer 500 instead of dropping the connection, and log
            # one line, no traceback, with the path but not the query (upload signatures).
            where = self.path.split("?", 1)[0]
            detail = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("\r", " ")
            log.error("localhub: %s %s failed: %s", method, where, detail)
            self._refuse(500, f"internal error in the local Hub ({type(exc).__name__})")

    def _refuse(self, status: int, message: str, code: str | None = None) -> None:
        """Answer an error, and leave the connection fit for the client's next request."""
        try:
            if self.replied:
                # Headers (maybe part of a body) are out: a second reply would be read as
                # the rest of the first. Closing is the only clear signal left.
                self.close_connection = True
                return
            if status >= 500 and self.body_consumed:
                # It broke after reading some of the body; how much is left is unknown.
                self.close_connection = True
            self.discard_unread_body()
            self.reply_error(status, message, code)
        except OSError:  # the client went away, or stopped sending its body
            self.close_connection = True

    def _route(self, method: str, p: list[str]) -> None:
        for prefix, methods, endpoint in PREFIX_ROUTES:
            if tuple(p[: len(prefix)]) == prefix and (methods is None or method in methods):
                return endpoint(self, p[len(prefix) :])
        if len(p) >= 4 and p[0] == "api" and p[1] in REPO_TYPES:
            return self._repo_api(method, REPO_TYPES[p[1]], f"{p[2]}/{p[3]}", p[4:])
        # Git-style paths: /[datasets/|spaces/]{owner}/{name}/...
        repo_type = "model"
        if p and p[0] in ("datasets", "spaces"):
            repo_type, p = REPO_TYPES[p[0]], p[1:]
        if len(p) >= 5 and p[2] == "resolve" and method in ("GET", "HEAD"):
            return api_files.resolve(self, repo_type, f"{p[0]}/{p[1]}", p[3], "/".join(p[4:]))
        if len(p) >= 2 and p[1].endswith(".git") and p[2:] == LFS_BATCH:
            return api_lfs.batch(self, repo_type, f"{p[0]}/{p[1][:-4]}")
        raise StoreError(404, f"no such endpoint: {method} /{'/'.join(p)}")

    def _repo_api(self, method: str, repo_type: str, repo_id: str, rest: list[str]) -> None:
        store = self.state.store
        action = rest[0] if rest else ""
        endpoint = REPO_ROUTES.get((method, action)) or REPO_ROUTES.get(("*", action))
        with store.lock:
            repo = store.get(repo_type, repo_id)
            self.check_visible(repo, repo_id)
            if endpoint is not None:
                return endpoint(self, repo, rest[1:])
        raise StoreError(404, f"no such endpoint: {method} {action} on {repo_id}")


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


__all__ = [
    "BAD_TOKEN_MESSAGE",
    "PREFIX_ROUTES",
    "REPO_ROUTES",
    "REPO_TYPES",
    "TREE_PAGE",
    "Fault",
    "HubHandler",
    "HubState",
    "make_server",
    "serve_in_thread",
]
