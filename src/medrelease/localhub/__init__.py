"""A local Hub-API-compatible server: publish to it and download from it with huggingface_hub.

    with running_hub(tmp / "hub") as url:
        HfApi(endpoint=url, token="hf_...").create_repo("me/model")

`serve()` returns a started `LocalHub` (background thread) for callers that need its state
(upload counters, fault injection); `medrelease hub-server` runs one in the foreground.
`localhub.client.use_local_hub(url)` points huggingface_hub's defaults (HF_ENDPOINT, offline
mode) at it, so code that resolves Hub ids without `endpoint=` downloads from it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medrelease.localhub.server import HubState

LOOPBACK = ("127.0.0.1", "localhost")


class LocalHub:
    """A running server: `url`, `state` (store, counters, faults), `stop()`."""

    def __init__(self, server: Any, state: HubState):
        self._server = server
        self.state = state
        self.url = state.base_url

    @property
    def root(self) -> Path:
        return self.state.store.root

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    root_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tokens: Mapping[str, str] | None = None,
    multipart_threshold: int = 64 * 1024 * 1024,
    multipart_chunk: int = 16 * 1024 * 1024,
) -> LocalHub:
    """Start a server on 127.0.0.1:`port` (0 = a free port) in a background thread.

    `tokens` maps accepted tokens to user names; None accepts any non-empty token.
    The server has no real access control, so it never binds another interface.
    """
    from medrelease.localhub.server import make_server, serve_in_thread

    if host not in LOOPBACK:
        raise ValueError(f"the local Hub binds 127.0.0.1 only, not {host!r}")
    server, state = make_server(
        Path(root_dir),
        port=port,
        tokens=tokens,
        multipart_threshold=multipart_threshold,
        multipart_chunk=multipart_chunk,
    )
    serve_in_thread(server)
    return LocalHub(server, state)


@contextlib.contextmanager
def running_hub(root_dir: str | Path, port: int = 0, **kwargs: Any) -> Iterator[str]:
    """Run a local Hub for the duration of the block; yields its base URL."""
    hub = serve(root_dir, port=port, **kwargs)
    try:
        yield hub.url
    finally:
        hub.stop()


__all__ = ["LocalHub", "running_hub", "serve"]
