"""Publishing to a local Hub over real HTTP with the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from helpers import HUB_TOKEN
from medrelease.core.console import Reporter
from medrelease.core.errors import GateFailed, PublishError, VerificationError
from publish.pubhelpers import REPO
from releases import BuiltRelease

GGUF_REPO = f"{REPO}-GGUF"
AWQ_REPO = f"{REPO}-AWQ"


def publish(release: BuiltRelease, hub: Any, **kwargs: Any) -> Any:
    from medrelease.publish.step import publish_release

    kwargs.setdefault("backoff_s", 0.0)
    return publish_release(
        release.load(), workdir=release.workdir, reporter=Reporter(quiet=True),
        endpoint=hub.url, **kwargs,
    )  # fmt: skip


def api(hub: Any) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=HUB_TOKEN)


def expected_files(release: BuiltRelease) -> dict[str, dict[str, str]]:
    """repo -> {path in repo: sha256} from the manifest's recorded outputs."""
    steps = release.manifest()["steps"]
    main = {k.removeprefix("merged/"): v["sha256"] for k, v in steps["merge"]["outputs"].items()}
    cards = steps["card"]["outputs"]
    main["README.md"] = cards["card/README.md"]["sha256"]
    main["metrics.png"] = cards["card/metrics.png"]["sha256"]
    gguf = {
        Path(k).name: v["sha256"]
        for q in steps["quantize"]["quants"]
        if q["family"] == "gguf" and q["accepted"]
        for k, v in q["files"].items()
    }
    gguf["README.md"] = cards["card/gguf/README.md"]["sha256"]
    awq = {
        k.removeprefix("quant/awq/"): v["sha256"]
        for q in steps["quantize"]["quants"]
        if q["family"] == "awq"
        for k, v in q["files"].items()
    }
    awq["README.md"] = cards["card/awq/README.md"]["sha256"]
    return {REPO: main, GGUF_REPO: gguf, AWQ_REPO: awq}


def remote_sha256(hub: Any, repo: str, revision: str, tmp: Path) -> dict[str, str]:
    """sha256 of every file in a repo at `revision`, downloaded through the client."""
    from huggingface_hub import snapshot_download

    folder = Path(
        snapshot_download(repo, revision=revision, cache_dir=tmp / "dl", endpoint=hub.url)
    )
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".gitattributes"
    }


def test_publish_matches_manifest_one_commit_tag_and_idempotent(
    release: BuiltRelease, hub: Any, transfer: str, tmp_path: Path
) -> None:
    result = publish(release, hub)
    assert not result.skipped
    assert [r["status"] for r in result.record["repos"]] == ["committed"] * 3
    client = api(hub)
    want = expected_files(release)
    published_manifest = None
    for repo, files in want.items():
        refs = client.list_repo_refs(repo)
        main = next(b.target_commit for b in refs.branches if b.name == "main")
        commits = client.list_repo_commits(repo)
        # the Hub's initial .gitattributes commit + exactly one release commit
        assert [c.title for c in commits] == ["Release tiny-release 0.1.0", "initial commit"]
        assert commits[0].commit_id == main
        assert [(t.name, t.target_commit) for t in refs.tags] == [("v0.1.0", main)]
        got = remote_sha256(hub, repo, "v0.1.0", tmp_path)
        published_manifest = got.pop("manifest.json")
        assert got == files, repo
        info = client.model_info(repo, files_metadata=True)
        lfs = {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs is not None}
        for path in ("model.safetensors", "tiny-release-Q8_0.gguf"):
            if path in files:
                assert lfs[path] == files[path]  # stored as LFS, checksum seen by the client
    assert "tiny-release-Q4_K_M.gguf" not in want[GGUF_REPO]  # rejected quant is not published
    assert published_manifest is not None
    record = release.manifest()["steps"]["publish"]
    assert record["status"] == "done"
    assert {r["repo"] for r in record["repos"]} == set(want)
    commits_before = hub.state.events["commit"]

    again = publish(release, hub)
    assert again.skipped
    assert [r["status"] for r in again.record["repos"]] == ["unchanged"] * 3
    assert hub.state.events["commit"] == commits_before
    for repo in want:
        assert len(client.list_repo_commits(repo)) == 2


def test_interrupted_upload_resumes_without_reupload(
    release: BuiltRelease, hub: Any, lfs_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    from huggingface_hub import HfApi

    real_commit = HfApi.create_commit

    def dropped(self: HfApi, *args: Any, **kwargs: Any) -> Any:
        raise httpx.ConnectError("connection dropped before the commit")

    monkeypatch.setattr(HfApi, "create_commit", dropped)
    with pytest.raises(PublishError, match="cannot reach"):
        publish(release, hub, retries=0)
    uploaded = dict(hub.state.uploads)
    assert len(uploaded) >= 3 and set(uploaded.values()) == {1}  # LFS bodies reached the server
    assert release.manifest()["steps"]["publish"]["status"] == "failed"
    assert [c.title for c in api(hub).list_repo_commits(REPO)] == ["initial commit"]

    monkeypatch.setattr(HfApi, "create_commit", real_commit)
    result = publish(release, hub)
    assert result.record["status"] == "done"
    assert all(hub.state.uploads[oid] == 1 for oid in uploaded)  # nothing was sent twice
    assert set(hub.state.uploads.values()) == {1}
    assert len(api(hub).list_repo_commits(REPO)) == 2


def test_interrupted_xet_upload_resumes_without_new_chunks(
    release: BuiltRelease, hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    real_commit = HfApi.create_commit
    monkeypatch.setattr(
        HfApi, "create_commit", lambda *a, **k: (_ for _ in ()).throw(httpx.ConnectError("drop"))
    )
    xorbs_dir = hub.root / "xet"

    def xorbs() -> set[str]:
        return {p.name for p in xorbs_dir.rglob("default.*") if not p.name.endswith(".tagset")}

    with pytest.raises(PublishError):
        publish(release, hub, retries=0)
    first = xorbs()
    assert first, "hf_xet wrote chunks into the local CAS"
    with pytest.raises(PublishError):  # interrupted again at the same point
        publish(release, hub, retries=0)
    assert xorbs() == first  # the second attempt found every chunk there: nothing re-sent
    monkeypatch.setattr(HfApi, "create_commit", real_commit)
    publish(release, hub)
    assert len(api(hub).list_repo_commits(REPO)) == 2
    assert len(api(hub).list_repo_commits(GGUF_REPO)) == 2


def test_failed_gate_is_refused_and_nothing_is_created(release: BuiltRelease, hub: Any) -> None:
    release.set_gate(False)
    with pytest.raises(GateFailed) as err:
        publish(release, hub)
    assert err.value.exit_code == 4
    assert "did not pass its gates" in str(err.value)
    assert "--allow-failed-gates" in (err.value.hint or "")
    assert not list((hub.root / "repos").rglob("*.json"))  # no repo was even created


def test_override_is_recorded_in_manifest_and_card(
    release: BuiltRelease, hub: Any, lfs_only: None, tmp_path: Path
) -> None:
    release.set_gate(False)
    result = publish(release, hub, allow_failed_gates=True)
    assert result.record["overrides"] == {"allow_failed_gates": True}
    assert release.manifest()["steps"]["publish"]["gates_passed"] is False
    from huggingface_hub import hf_hub_download

    card = Path(hf_hub_download(REPO, "README.md", endpoint=hub.url, cache_dir=tmp_path / "c"))
    text = card.read_text()
    assert text.startswith("---\nlicense: apache-2.0")  # metadata still first
    assert "--allow-failed-gates" in text and "did **not** pass" in text
    pub = json.loads(
        Path(hf_hub_download(REPO, "manifest.json", endpoint=hub.url, cache_dir=tmp_path / "c"))
        .read_text()
    )  # fmt: skip
    assert pub["publication"] == {"overrides": {"allow_failed_gates": True}, "gates_passed": False}
    assert "publish" not in pub["steps"]


def test_release_without_gate_step_is_refused(release: BuiltRelease, hub: Any) -> None:
    data = release.manifest()
    del data["steps"]["gate"]
    release.write_manifest(data)
    with pytest.raises(GateFailed, match="gates were never run"):
        publish(release, hub)


def test_changed_file_is_refused(release: BuiltRelease, hub: Any) -> None:
    cfg = release.root / "merged" / "config.json"
    cfg.write_text(cfg.read_text().replace("}", ', "edited": true}', 1))
    with pytest.raises(VerificationError) as err:
        publish(release, hub)
    assert err.value.exit_code == 5
    assert "merged/config.json: sha256 differs" in str(err.value)


def test_unrecorded_extra_file_is_refused(release: BuiltRelease, hub: Any) -> None:
    data = release.manifest()
    del data["steps"]["card"]["outputs"]["card/gguf/README.md"]
    release.write_manifest(data)
    with pytest.raises(VerificationError, match=r"card/gguf/README\.md: not recorded"):
        publish(release, hub)


def test_bad_token_gets_the_401_message(
    release: BuiltRelease, hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = "hf_ThisTokenIsNotKnownToTheServer12345"
    monkeypatch.setenv("HF_TOKEN", bad)
    with pytest.raises(PublishError) as err:
        publish(release, hub)
    message = str(err.value) + (err.value.hint or "")
    assert "rejected the token (401 Unauthorized)" in message
    assert "HF_TOKEN" in message
    assert bad not in message and HUB_TOKEN not in message
    assert err.value.exit_code == 6


def test_no_token_fails_before_any_request(
    release: BuiltRelease, hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PublishError, match="no Hub token"):
        publish(release, hub)
    assert not list((hub.root / "repos").rglob("*.json"))


def test_transient_server_error_is_retried(release: BuiltRelease, hub: Any, lfs_only: None) -> None:
    from medrelease.localhub.server import Fault

    hub.state.faults.append(Fault("/commit/", 503, times=1))
    hub.state.faults.append(Fault("/api/repos/create", 429, times=1))
    result = publish(release, hub, retries=2)
    assert [r["status"] for r in result.record["repos"]] == ["committed"] * 3
    assert hub.state.events["commit"] == 3  # the failed attempt made no commit; no duplicates
    assert all(f.times == 0 for f in hub.state.faults)


def test_persistent_conflict_gives_the_412_message(
    release: BuiltRelease, hub: Any, lfs_only: None
) -> None:
    from medrelease.localhub.server import Fault

    hub.state.faults.append(Fault("/commit/", 412, times=10))
    with pytest.raises(PublishError) as err:
        publish(release, hub, retries=1)
    assert "changed while publishing (412" in str(err.value)
    assert "after 2 attempts" in str(err.value)


def test_forbidden_and_not_found_messages(release: BuiltRelease, hub: Any, lfs_only: None) -> None:
    from medrelease.localhub.server import Fault

    hub.state.faults.append(Fault("/api/repos/create", 403, times=1))
    with pytest.raises(PublishError, match=r"may not write to .*403 Forbidden"):
        publish(release, hub)
    hub.state.faults.append(Fault("/api/repos/create", 404, times=1))
    with pytest.raises(PublishError, match=r"not found .*\(404\)"):
        publish(release, hub)


def test_card_fix_under_existing_tag_updates_main_and_keeps_the_tag(
    release: BuiltRelease, hub: Any, lfs_only: None
) -> None:
    publish(release, hub)
    from medrelease.core.hashing import file_record

    tag_before = {t.name: t.target_commit for t in api(hub).list_repo_refs(REPO).tags}
    card = release.root / "card" / "README.md"
    card.write_text(card.read_text() + "\nA late edit.\n")
    data = release.manifest()
    data["steps"]["card"]["outputs"]["card/README.md"] = file_record(card)
    release.write_manifest(data)
    publish(release, hub)
    commits = api(hub).list_repo_commits(REPO)
    assert len(commits) == 3  # the card fix is one more commit on main
    tags = {t.name: t.target_commit for t in api(hub).list_repo_refs(REPO).tags}
    assert tags == tag_before  # the release tag still points at the released weights
    assert tags["v0.1.0"] != commits[0].commit_id


def test_changed_weights_under_existing_tag_are_refused(
    release: BuiltRelease, hub: Any, lfs_only: None
) -> None:
    publish(release, hub)
    from medrelease.core.hashing import file_record

    cfg = release.root / "merged" / "config.json"
    cfg.write_text(cfg.read_text() + "\n")
    data = release.manifest()
    data["steps"]["merge"]["outputs"]["merged/config.json"] = file_record(cfg)
    release.write_manifest(data)
    with pytest.raises(PublishError, match=r"already has tag v0\.1\.0"):
        publish(release, hub)
    assert len(api(hub).list_repo_commits(REPO)) == 2


def test_review_mode_opens_a_pull_request(release: BuiltRelease, hub: Any, lfs_only: None) -> None:
    result = publish(release, hub, review=True)
    client = api(hub)
    for outcome in result.record["repos"]:
        assert outcome["status"] == "pull-request"
        assert outcome["tag"] is None
        repo = outcome["repo"]
        assert [c.title for c in client.list_repo_commits(repo)] == ["initial commit"]
        pr = client.get_discussion_details(repo, outcome["pr_num"])
        assert pr.is_pull_request and pr.status == "open" and pr.target_branch == "refs/heads/main"
        files = client.list_repo_files(repo, revision=f"refs/pr/{outcome['pr_num']}")
        assert "README.md" in files and "manifest.json" in files
        assert client.list_repo_refs(repo).tags == []
    again = publish(release, hub, review=True)  # the open PR already holds this release
    assert [r["status"] for r in again.record["repos"]] == ["unchanged"] * 3
    assert [r["pr_num"] for r in again.record["repos"]] == [1, 1, 1]
    client.merge_pull_request(REPO, result.record["repos"][0]["pr_num"])
    assert "model.safetensors" in client.list_repo_files(REPO)


def test_dry_run_plans_without_writing(release: BuiltRelease, hub: Any) -> None:
    before = release.manifest()
    result = publish(release, hub, dry_run=True)
    plan = {r["repo"]: r for r in result.record["plan"]}
    assert set(plan) == {REPO, GGUF_REPO, AWQ_REPO}
    assert plan[GGUF_REPO]["tag"] == "v0.1.0"
    files = {f["path"]: f for f in plan[GGUF_REPO]["files"]}
    assert set(files) == {"README.md", "manifest.json", "tiny-release-Q8_0.gguf"}
    assert files["tiny-release-Q8_0.gguf"]["status"] == "new"
    assert files["tiny-release-Q8_0.gguf"]["size"] == 300_008
    assert "+# Tiny Release" in plan[REPO]["card_diff"]
    assert not list((hub.root / "repos").rglob("*.json"))
    assert release.manifest() == before
