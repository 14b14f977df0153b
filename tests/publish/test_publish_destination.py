"""Publish depends on where it publishes and on what is there now (issue 20).

After a publish, its record holds the destination and the remote state it left (main and the
version tag of every repo); the release is current there only while the Hub still holds that.
"""

from __future__ import annotations

from typing import Any

from helpers import HUB_TOKEN
from medrelease.core.console import Reporter
from publish.pubhelpers import REPO
from releases import BuiltRelease


def _why(release: BuiltRelease, options: dict[str, Any] | None) -> list[str]:
    from medrelease.core.hashing import HashCache
    from medrelease.core.inputs import why_stale
    from medrelease.core.manifest import Manifest
    from medrelease.core.paths import ReleasePaths
    from medrelease.publish.inputs import INPUTS

    paths = ReleasePaths(release.workdir, release.root.name)
    manifest = Manifest.load(paths.root)
    now = INPUTS.compute(release.load(), paths, manifest, HashCache(None), options)
    return why_stale(manifest.step("publish"), now, paths, HashCache(None), check_outputs=False)


def test_publish_is_current_only_where_the_release_is(release: BuiltRelease, hub: Any, tmp_path):
    from huggingface_hub import HfApi

    from medrelease.localhub import serve
    from medrelease.publish.step import publish_release

    publish_release(
        release.load(), workdir=release.workdir, reporter=Reporter(quiet=True),
        endpoint=hub.url, backoff_s=0.0,
    )  # fmt: skip
    here = {"endpoint": hub.url, "target": None}
    assert _why(release, here) == []
    assert _why(release, None) == []  # status: judged at the recorded destination

    # another endpoint is another destination: not published there
    other = serve(tmp_path / "hub2", tokens={HUB_TOKEN: "bob"})
    try:
        why = _why(release, {"endpoint": other.url, "target": None})
        assert any(w.startswith(f"destination: endpoint {hub.url} → {other.url}") for w in why)
        assert any(w.startswith("remote: ") for w in why), why
    finally:
        other.stop()
    # a dir:// export of the same release is another destination too
    why = _why(release, {"endpoint": None, "target": f"dir://{tmp_path / 'export'}"})
    assert why and why[0].startswith("destination: "), why

    # the version tag deleted on the Hub: the release is no longer there
    HfApi(endpoint=hub.url, token=HUB_TOKEN).delete_tag(REPO, tag="v0.1.0")
    why = _why(release, here)
    assert why and why[0].startswith(f"remote: {REPO}.tag "), why
    assert _why(release, None) == why  # status says the same
