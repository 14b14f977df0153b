"""After a commit, the Hub's listing must equal the manifest, or nothing is tagged (exit 6).

The local Hub is made to store something other than what it was sent: a test hook on its
store rewrites one file of a release commit (as a faulty Hub, proxy or storage would), then
the real client publishes through it over HTTP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from helpers import HUB_TOKEN, run_cli
from medrelease.core.console import Reporter
from medrelease.core.errors import PublishError
from publish.pubhelpers import REPO
from releases import BuiltRelease

GGUF_REPO = f"{REPO}-GGUF"
AWQ_REPO = f"{REPO}-AWQ"
Q8 = "tiny-release-Q8_0.gguf"


def corrupt_on_commit(
    monkeypatch: pytest.MonkeyPatch,
    hub: Any,
    repo_id: str,
    path: str,
    alter: Callable[[bytes], bytes],
) -> Callable[[], None]:
    """Make the local Hub keep `alter(body)` instead of `path`'s uploaded body in `repo_id`'s
    release commits (the `initial commit` is left alone); returns the switch that heals it."""
    from medrelease.localhub.store import Repo

    real_add_commit = Repo.add_commit
    blobs = hub.state.store.blobs

    def add_commit(self: Repo, parent: Any, tree: dict[str, Any], title: str, *a: Any) -> str:
        entry = tree.get(path)
        if self.repo_id == repo_id and title != "initial commit" and entry is not None:
            body = alter(blobs.path(entry["sha256"]).read_bytes())
            tree = {**tree, path: {**entry, "sha256": blobs.put_bytes(body), "size": len(body)}}
        return real_add_commit(self, parent, tree, title, *a)

    monkeypatch.setattr(Repo, "add_commit", add_commit)
    return lambda: monkeypatch.setattr(Repo, "add_commit", real_add_commit)


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def api(hub: Any) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=HUB_TOKEN)


def head(hub: Any, repo: str) -> str:
    return str(api(hub).list_repo_commits(repo)[0].commit_id)


def publish(release: BuiltRelease, hub: Any) -> Any:
    from medrelease.publish.step import publish_release

    return publish_release(
        release.load(), workdir=release.workdir, reporter=Reporter(quiet=True),
        endpoint=hub.url, backoff_s=0.0,
    )  # fmt: skip


def test_lfs_file_altered_by_the_hub_is_exit_6_without_tag(
    release: BuiltRelease,
    hub: Any,
    lfs_only: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = (release.root / "quant" / "gguf" / Q8).read_bytes()
    good = hashlib.sha256(body).hexdigest()
    bad = hashlib.sha256(flip_last_byte(body)).hexdigest()
    heal = corrupt_on_commit(monkeypatch, hub, GGUF_REPO, Q8, flip_last_byte)
    code = run_cli("publish", release.recipe, "--workdir", release.workdir, "--endpoint", hub.url)
    err = capsys.readouterr().err
    assert code == 6
    commit = head(hub, GGUF_REPO)
    want = (
        f"{GGUF_REPO} at {commit[:12]}: the Hub's files differ from the manifest: "
        f"{Q8}: sha256 {bad[:12]} on the Hub, {good[:12]} in the manifest; "
        "tag v0.1.0 was not created"
    )
    assert want in " ".join(err.split()), err
    assert "Traceback" not in err
    client = api(hub)
    assert client.list_repo_refs(GGUF_REPO).tags == []  # the corrupted release is not tagged
    assert [t.name for t in client.list_repo_refs(REPO).tags] == ["v0.1.0"]  # checked, tagged
    record = release.manifest()["steps"]["publish"]
    assert record["status"] == "failed" and want in record["error"]
    assert record["repos"][0]["verified_files"] > 3  # the main repo was listed and compared

    # the Hub behaves again: a re-run uploads the differing file in a new commit, then tags
    heal()
    result = publish(release, hub)
    gguf = next(r for r in result.record["repos"] if r["repo"] == GGUF_REPO)
    assert gguf["status"] == "committed" and gguf["changed"] == [Q8]
    tags = {t.name: t.target_commit for t in client.list_repo_refs(GGUF_REPO).tags}
    assert tags == {"v0.1.0": head(hub, GGUF_REPO)}


def test_regular_files_altered_by_the_hub_are_named(
    release: BuiltRelease, hub: Any, lfs_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # same size, other bytes: only the git blob id tells (the Hub keeps no sha256 for them)
    corrupt_on_commit(monkeypatch, hub, AWQ_REPO, "config.json", lambda b: b.replace(b"{", b"[", 1))
    with pytest.raises(PublishError) as err:
        publish(release, hub)
    assert err.value.exit_code == 6
    local = (release.root / "quant" / "awq" / "config.json").read_bytes()
    from huggingface_hub.utils.sha import git_hash

    remote_blob = git_hash(local.replace(b"{", b"[", 1))
    assert str(err.value) == (
        f"{AWQ_REPO} at {head(hub, AWQ_REPO)[:12]}: the Hub's files differ from the manifest: "
        f"config.json: content on the Hub (git blob {remote_blob[:12]}) differs from the "
        f"manifest's (sha256 {hashlib.sha256(local).hexdigest()[:12]}); "
        "tag v0.1.0 was not created"
    )
    assert api(hub).list_repo_refs(AWQ_REPO).tags == []


def test_truncated_readme_is_a_size_difference(
    release: BuiltRelease, hub: Any, lfs_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt_on_commit(monkeypatch, hub, REPO, "README.md", lambda b: b[:10])
    with pytest.raises(PublishError) as err:
        publish(release, hub)
    size = (release.root / "card" / "README.md").stat().st_size
    assert f"README.md: size 10 on the Hub, {size} in the manifest; tag v0.1.0" in str(err.value)
    client = api(hub)
    assert client.list_repo_refs(REPO).tags == []
    assert not client.repo_exists(GGUF_REPO)  # publishing stopped at the repo that failed


def test_compare_reports_missing_and_extra_files() -> None:
    from medrelease.publish.plan import PlannedFile
    from medrelease.publish.verify_remote import HubEntry, compare

    data = b"hello"
    planned = [
        PlannedFile("a.txt", hashlib.sha256(data).hexdigest(), 5, "generated", data=data),
        PlannedFile("b.bin", "0" * 64, 7, "generated", data=b"x" * 7),
    ]
    from huggingface_hub.utils.sha import git_hash

    remote = {
        "a.txt": HubEntry(5, None, git_hash(data)),
        ".gitattributes": HubEntry(10, None, "f" * 40),
        "stray.bin": HubEntry(3, "1" * 64, "e" * 40),
    }
    assert compare(planned, remote) == [
        "b.bin: missing on the Hub",
        "stray.bin: on the Hub but not in the release",
    ]
    remote["b.bin"] = HubEntry(7, "0" * 64, "d" * 40)
    del remote["stray.bin"]
    assert compare(planned, remote) == []  # equal: the Hub's own .gitattributes is allowed
