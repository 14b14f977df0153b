"""Find each stage's checkpoint folder: local, Hub (exact commit recorded), or adapter.

Resolution is two-phase so preflight can run "before any download completes":
`locate()` fetches only small metadata files (config, tokenizer, safetensors index) and
records the exact Hub commit; `fetch_weights()` downloads the weights of the pinned commit.
Offline (HF_HUB_OFFLINE=1) everything comes from the local Hub cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.errors import InputError
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.stages import AdapterStage, HubStage, LocalStage, split_revision

METADATA_PATTERNS = [
    "*.json",
    "*.model",
    "*.txt",
    "*.jinja",
    "*.py",
    "*.tiktoken",
]
WEIGHT_PATTERNS = ["*.safetensors", "*.bin", "*.pt", "*.pth"]


@dataclass
class ResolvedStage:
    """Where a stage's files are and exactly which version they are."""

    name: str
    kind: str  # local | hub | adapter
    source: str  # what the recipe said (path as written, or hub id)
    path: Path  # local folder holding (at least) the metadata files
    revision: str | None = None  # exact Hub commit, when from the Hub
    requested_revision: str | None = None
    allow_pickle: bool = False
    weights_ready: bool = True  # False until a Hub stage's weights are downloaded
    adapter: ResolvedStage | None = None  # for adapter stages: the adapter files
    base: str | None = None  # for adapter stages: the base stage name
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"kind": self.kind, "source": self.source}
        if self.kind == "hub":
            rec["requested_revision"] = self.requested_revision
            rec["revision"] = self.revision
        if self.adapter is not None:
            rec["base"] = self.base
            rec["adapter"] = self.adapter.record()
        return rec


def download_row_label(repo: str) -> Callable[[str], str | None]:
    """Which of huggingface_hub's download bars to show, and as what. It aggregates bytes
    written ("Reconstructing ...", the one to watch) and, with Xet, bytes transferred
    (deduplicated, so it can stop early: hidden); the per-file count stays hidden too."""

    def label(desc: str) -> str | None:
        return f"downloading {repo}" if desc.startswith("Reconstructing") else None

    return label


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> str | None:
    """The Hub cache folder from the environment *now* (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _hub_locate(
    name: str,
    repo: str,
    revision: str | None,
    patterns: list[str],
    tqdm_class: type[Any] | None = None,
) -> tuple[Path, str]:
    """Download (or find in cache) the files matching `patterns`; return (folder, commit)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    rev = revision or "main"
    try:
        folder = snapshot_download(
            repo_id=repo,
            revision=rev,
            allow_patterns=patterns,
            local_files_only=_hub_offline(),
            cache_dir=hub_cache_dir(),
            tqdm_class=tqdm_class,
        )
    except GatedRepoError:
        raise InputError(
            f"stage {name!r}: {repo} is gated and this account has not been granted access",
            hint="accept the model's terms on its Hub page, then `hf auth login` or set HF_TOKEN",
        ) from None
    except RepositoryNotFoundError:
        raise InputError(
            f"stage {name!r}: Hub repo {repo} does not exist (or is private)",
            hint="check the id; for a private repo, log in or set HF_TOKEN",
        ) from None
    except RevisionNotFoundError:
        raise InputError(
            f"stage {name!r}: {repo} has no revision {rev!r}",
            hint="use a branch, tag or full commit hash that exists",
        ) from None
    except LocalEntryNotFoundError:
        raise InputError(
            f"stage {name!r}: {repo}@{rev} is not in the local Hub cache and Hub access is off",
            hint="download it once with network access (or unset HF_HUB_OFFLINE), "
            "or point the stage at a local folder",
        ) from None
    except OSError as exc:
        raise InputError(
            f"stage {name!r}: could not reach the Hub for {repo}: {exc}",
            hint="check the network / HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the cache",
        ) from None
    path = Path(folder)
    # snapshot folders are named by the commit they hold: that is the exact revision
    return path, path.name


def _local_path(name: str, raw: str, base_dir: Path) -> Path:
    p = Path(os.path.expanduser(raw))
    if not p.is_absolute():
        p = base_dir / p
    if not p.exists():
        raise InputError(
            f"stage {name!r}: folder {p} does not exist",
            hint="fix the path in stages: (relative paths are relative to the recipe file)",
        )
    if not p.is_dir():
        raise InputError(f"stage {name!r}: {p} is a file; a stage must be a model folder")
    return p.resolve()


def _is_local_ref(ref: str, base_dir: Path) -> bool:
    return ref.startswith((".", "/", "~")) or (base_dir / ref).is_dir()


def locate_stage(loaded: LoadedRecipe, name: str) -> ResolvedStage:
    spec = loaded.recipe.stages[name]
    allow_pickle = spec.allow_pickle or loaded.recipe.allow_pickle
    if isinstance(spec, LocalStage):
        path = _local_path(name, spec.path, loaded.base_dir)
        return ResolvedStage(name, "local", spec.path, path, allow_pickle=allow_pickle)
    if isinstance(spec, HubStage):
        path, commit = _hub_locate(name, spec.hub, spec.revision, METADATA_PATTERNS)
        return ResolvedStage(
            name,
            "hub",
            spec.hub,
            path,
            revision=commit,
            requested_revision=spec.revision,
            allow_pickle=allow_pickle,
            weights_ready=False,
        )
    assert isinstance(spec, AdapterStage)
    if _is_local_ref(spec.adapter, loaded.base_dir):
        apath = _local_path(name, spec.adapter, loaded.base_dir)
        adapter = ResolvedStage(f"{name} (adapter)", "local", spec.adapter, apath)
    else:
        repo, rev = split_revision(spec.adapter)
        apath, commit = _hub_locate(name, repo, rev, [*METADATA_PATTERNS, *WEIGHT_PATTERNS])
        adapter = ResolvedStage(
            f"{name} (adapter)", "hub", repo, apath, revision=commit, requested_revision=rev
        )
    adapter.allow_pickle = allow_pickle
    return ResolvedStage(
        name,
        "adapter",
        spec.adapter,
        apath,
        allow_pickle=allow_pickle,
        adapter=adapter,
        base=spec.base,
        weights_ready=False,
    )


def fetch_weights(stage: ResolvedStage, reporter: Reporter | None = None) -> None:
    """Download a Hub stage's weights at the exact commit preflight saw, with a progress row
    (bytes, speed) and a file count: a 16 GB download must not look like a hang."""
    if stage.weights_ready or stage.kind != "hub":
        return
    from medrelease.core.rich_tqdm import rich_tqdm

    patterns = ["*.safetensors", "*.safetensors.index.json"]
    if stage.allow_pickle:
        patterns += ["*.bin", "*.bin.index.json", "*.pt", "*.pth"]
    reporter = reporter or Reporter(quiet=True)
    with reporter.progress(in_bytes=True) as progress:
        rows = None if reporter.quiet else progress
        path, commit = _hub_locate(
            stage.name,
            stage.source,
            stage.revision,
            [*METADATA_PATTERNS, *patterns],
            tqdm_class=rich_tqdm(rows, download_row_label(stage.source)),
        )
    stage.path, stage.revision = path, commit
    stage.weights_ready = True
