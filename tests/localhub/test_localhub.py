"""The local Hub server itself, driven by the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import HUB_TOKEN


@pytest.fixture
def client(hub: Any) -> Any:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    api.create_repo("alice/m")
    return api


def test_parent_commit_conflict_is_412(client: Any) -> None:
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    first = client.model_info("alice/m").sha
    client.create_commit(
        "alice/m", [CommitOperationAdd("a.txt", b"a")], commit_message="a", parent_commit=first
    )
    with pytest.raises(HfHubHTTPError) as err:
        client.create_commit(
            "alice/m", [CommitOperationAdd("b.txt", b"b")], commit_message="b", parent_commit=first
        )
    assert err.value.response.status_code == 412
    assert client.list_repo_files("alice/m") == [".gitattributes", "a.txt"]


def test_bad_token_is_401_on_every_call(hub: Any) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    bad = HfApi(endpoint=hub.url, token="hf_NotAValidTokenForThisServer000")
    for call in (lambda: bad.create_repo("alice/x"), lambda: bad.whoami()):
        with pytest.raises(HfHubHTTPError) as err:
            call()
        assert err.value.response.status_code == 401


def test_rejected_request_leaves_pooled_connection_usable(hub: Any) -> None:
    """A 401 sent before the body is read must not poison the client's pooled connection:
    either the body is drained or the server says `Connection: close`. This raced in CI."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    bad = HfApi(endpoint=hub.url, token="hf_NotAValidTokenForThisServer000")
    statuses = []
    for _ in range(60):
        for call in (lambda: bad.create_repo("alice/x"), lambda: bad.whoami()):
            with pytest.raises(HfHubHTTPError) as err:
                call()
            statuses.append(err.value.response.status_code)
    assert statuses == [401] * 120


def test_existing_tag_is_409_and_tags_resolve(client: Any, tmp_path: Path, hub: Any) -> None:
    from huggingface_hub import CommitOperationAdd, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    c1 = client.create_commit("alice/m", [CommitOperationAdd("f.txt", b"one")], commit_message="1")
    client.create_tag("alice/m", tag="v1", revision=c1.oid)
    client.create_commit("alice/m", [CommitOperationAdd("f.txt", b"two")], commit_message="2")
    with pytest.raises(HfHubHTTPError) as err:
        client.create_tag("alice/m", tag="v1")
    assert err.value.response.status_code == 409
    old = hf_hub_download("alice/m", "f.txt", revision="v1", endpoint=hub.url, cache_dir=tmp_path)
    new = hf_hub_download("alice/m", "f.txt", endpoint=hub.url, cache_dir=tmp_path)
    assert Path(old).read_bytes() == b"one" and Path(new).read_bytes() == b"two"


def test_lfs_upload_with_wrong_content_is_rejected(client: Any, hub: Any) -> None:
    from huggingface_hub.lfs import UploadInfo, post_lfs_batch_info

    body = os.urandom(5000)
    info = UploadInfo.from_bytes(body)
    actions, _errors, _ = post_lfs_batch_info(
        upload_infos=[info], token=HUB_TOKEN, repo_type="model", repo_id="alice/m", endpoint=hub.url
    )
    href = actions[0]["actions"]["upload"]["href"]
    assert httpx.put(href, content=b"not the announced bytes").status_code == 400
    assert httpx.put(href + "x", content=body).status_code == 403  # bad signature
    assert httpx.put(href, content=body).status_code == 200
    assert hub.state.store.blobs.has(hashlib.sha256(body).hexdigest())


def test_commit_naming_an_unuploaded_lfs_file_is_refused(client: Any, hub: Any) -> None:
    header = {"key": "header", "value": {"summary": "x"}}
    missing = {
        "key": "lfsFile",
        "value": {"path": "w.bin", "algo": "sha256", "oid": "ab" * 32, "size": 3},
    }
    payload = "\n".join(json.dumps(x) for x in (header, missing)).encode()
    r = httpx.post(
        f"{hub.url}/api/models/alice/m/commit/main",
        content=payload,
        headers={"Authorization": f"Bearer {HUB_TOKEN}", "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 422 and "was not uploaded" in r.headers["X-Error-Message"]


def test_snapshot_download_of_an_xet_upload(client: Any, hub: Any, tmp_path: Path) -> None:
    from huggingface_hub import CommitOperationAdd, constants, snapshot_download

    assert not constants.HF_HUB_DISABLE_XET
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(os.urandom(200_000))
    client.create_commit(
        "alice/m",
        [
            CommitOperationAdd("model.safetensors", weights),
            CommitOperationAdd("config.json", b"{}"),
        ],
        commit_message="xet upload",
    )
    assert hub.state.events["xet-write-token"] >= 1 and not hub.state.uploads  # went via Xet
    folder = Path(snapshot_download("alice/m", endpoint=hub.url, cache_dir=tmp_path / "dl"))
    assert (folder / "model.safetensors").read_bytes() == weights.read_bytes()
    assert (folder / "config.json").read_bytes() == b"{}"


def test_hub_server_command_serves_on_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medrelease.cli",
            "hub-server",
            "--root",
            str(tmp_path),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        deadline = time.time() + 10
        while True:
            try:
                r = httpx.get(f"{url}/api/agent-harnesses")
                break
            except httpx.TransportError:
                assert time.time() < deadline
                time.sleep(0.1)
        assert r.json() == {"standardEnvVars": [], "harnesses": {}}
        missing = httpx.get(f"{url}/api/models/nobody/nothing")
        assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "RepoNotFound"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_refuses_non_loopback(tmp_path: Path) -> None:
    from medrelease.localhub import serve

    with pytest.raises(ValueError, match=r"127\.0\.0\.1 only"):
        serve(tmp_path, host="0.0.0.0")


def test_recipe_hub_stage_resolves_through_the_local_hub(
    hub: Any, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe naming `owner/repo@tag` gets its files from the local Hub (merge's resolver)."""
    from huggingface_hub import HfApi

    from helpers import write_recipe
    from medrelease.core.paths import ReleasePaths
    from medrelease.localhub.client import use_local_hub
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.stages.folders import stage_folder

    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    api.create_repo("alice/tiny-base")
    commit = api.upload_folder(repo_id="alice/tiny-base", folder_path=tiny_model)
    api.create_tag("alice/tiny-base", tag="v1", revision=commit.oid)
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {"base": "alice/tiny-base@v1", "sft": str(tiny_model)},
        {"merge_method": "linear", "models": [{"model": "base", "parameters": {"weight": 1.0}}]},
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with use_local_hub(hub.url):
        loaded = load_recipe(recipe)
        stage = stage_folder(loaded, "base", ReleasePaths(tmp_path / "build", "r"))
    assert stage.revision == commit.oid  # pinned to the tag's commit
    for name in ("model.safetensors", "config.json"):
        assert (stage.path / name).read_bytes() == (tiny_model / name).read_bytes()
    from huggingface_hub import constants

    assert hub.url != constants.ENDPOINT  # restored after the block
