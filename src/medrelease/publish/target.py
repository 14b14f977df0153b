"""Where a publish goes (`--target`, `--endpoint`, HF_ENDPOINT) and what is there now.

Both are inputs of the publish step (publish/inputs.py): a release published to one place is
not published to another, and a destination that no longer holds the release (its repo or
tag deleted, its export folder missing or edited) is not current. The remote is read with one
cheap query per repo: the Hub's refs (main and the version tag), or a folder's digests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medrelease.core.errors import PublishError, UsageError
from medrelease.core.hashing import HashCache, digest_of, folder_records

PUBLIC_HUB = "https://huggingface.co"


def parse_dir_target(target: str) -> Path | None:
    if not target.startswith("dir://"):
        return None
    rest = target.removeprefix("dir://")
    if not rest:
        raise PublishError("dir:// needs a folder, e.g. dir://./export or dir:///mnt/usb")
    return Path(rest).expanduser()


def resolve_endpoint(target: str | None, endpoint: str | None) -> str:
    if target and target.startswith(("http://", "https://")):
        return target.rstrip("/")
    if target not in (None, "hub", "hf"):
        raise UsageError(
            f"unknown publish target {target!r}",
            hint="use --target hub (HF_ENDPOINT / --endpoint), an http(s) Hub URL, or dir://PATH",
        )
    return (endpoint or os.environ.get("HF_ENDPOINT") or PUBLIC_HUB).rstrip("/")


def destination(target: str | None, endpoint: str | None) -> dict[str, str]:
    """{kind: dir, path} or {kind: hub, endpoint}: the destination as recorded."""
    export_root = parse_dir_target(target) if target else None
    if export_root is not None:
        return {"kind": "dir", "path": str(export_root.resolve())}
    return {"kind": "hub", "endpoint": resolve_endpoint(target, endpoint)}


def remote_state(
    dest: dict[str, Any], repos: list[str], tag: str, cache: HashCache
) -> dict[str, Any]:
    """repo -> what the destination holds now: {head, tag} commits on a Hub, the digest of the
    exported folder (None when missing); a string when the Hub could not be read."""
    if dest.get("kind") == "dir":
        root = Path(str(dest["path"]))
        return {
            repo: digest_of(folder_records(root / repo, cache)) if (root / repo).is_dir() else None
            for repo in repos
        }
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi(endpoint=str(dest["endpoint"]))
    out: dict[str, Any] = {}
    for repo in repos:
        try:
            refs = api.list_repo_refs(repo)
        except RepositoryNotFoundError:
            out[repo] = {"head": None, "tag": None}
            continue
        except Exception as exc:  # offline, unreachable, refused: not confirmed, so not current
            out[repo] = f"not checked ({type(exc).__name__})"
            continue
        out[repo] = {
            "head": next((b.target_commit for b in refs.branches if b.name == "main"), None),
            "tag": next((t.target_commit for t in refs.tags if t.name == tag), None),
        }
    return out
