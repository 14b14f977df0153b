"""`medrelease card --diff`: what changes against the cards currently on the Hub.

The published README.md of each repo (main, -GGUF, -AWQ) is fetched with huggingface_hub at
`HF_ENDPOINT` (read at call time, so a local Hub server started after import works too) and
compared line by line with the freshly rendered card.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.core.errors import EnvironmentProblem, PublishError


@dataclass
class CardDiff:
    card: str  # model | gguf | awq
    against: str  # "<repo>" or a local file
    status: str  # new | changed | unchanged
    diff: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "card": self.card,
            "against": self.against,
            "status": self.status,
            "diff": self.diff,
        }


def diff_texts(card: str, against: str, old: str | None, new: str) -> CardDiff:
    if old is not None and old == new:
        return CardDiff(card, against, "unchanged", "")
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{against} (published)" if old is not None else "/dev/null",
        tofile=f"{card} card (rendered)",
    )
    return CardDiff(card, against, "new" if old is None else "changed", "".join(lines))


def fetch_published_readme(repo_id: str) -> str | None:
    """README.md on the Hub's main branch; None when the repo or the file does not exist."""
    from huggingface_hub import hf_hub_download, is_offline_mode
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # the library's own reading of HF_HUB_OFFLINE (taken when it was imported) is what counts
    if is_offline_mode():
        raise EnvironmentProblem(
            "--diff needs the Hub but Hub access is off (HF_HUB_OFFLINE=1)",
            hint="unset HF_HUB_OFFLINE, or compare with a local file: --diff-against FILE",
        )
    endpoint = os.environ.get("HF_ENDPOINT") or None
    if not _repo_exists(repo_id, endpoint):
        return None  # not published yet: the whole card is new
    # a fresh, empty cache: the library would otherwise fall back to a stale cached README
    # when the Hub does not answer, and the diff would compare against an old card
    with tempfile.TemporaryDirectory(prefix="medrelease-card-diff-") as cache:
        try:
            path = hf_hub_download(
                repo_id, "README.md", repo_type="model", endpoint=endpoint, cache_dir=cache
            )
            return Path(path).read_text(encoding="utf-8")
        except LocalEntryNotFoundError:
            # checked first: it is an EntryNotFoundError too, but means "no answer", not "no file"
            raise PublishError(
                f"cannot reach the Hub at {endpoint or 'huggingface.co'} to read {repo_id}",
                hint="check the network and HF_ENDPOINT, or use --diff-against FILE",
            ) from None
        except GatedRepoError:
            raise PublishError(
                f"{repo_id} is gated and this account has no access",
                hint="log in (`hf auth login`) or set HF_TOKEN with access to the repo",
            ) from None
        except (RepositoryNotFoundError, RemoteEntryNotFoundError, RevisionNotFoundError):
            return None  # not published yet: the whole card is new
        except HfHubHTTPError as exc:
            raise PublishError(
                f"the Hub refused to send README.md of {repo_id}: {str(exc).splitlines()[0]}",
                hint="for a private repo, log in (`hf auth login`) or set HF_TOKEN",
            ) from None


def _repo_exists(repo_id: str, endpoint: str | None) -> bool:
    """One request without the download path's retry loop, so an unreachable Hub fails fast."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi(endpoint=endpoint).model_info(repo_id, timeout=15)
    except GatedRepoError:
        return True  # the download reports the access problem
    except RepositoryNotFoundError:
        return False
    except httpx.HTTPError:
        raise PublishError(
            f"cannot reach the Hub at {endpoint or 'huggingface.co'} to read {repo_id}",
            hint="check the network and HF_ENDPOINT, or use --diff-against FILE",
        ) from None
    return True


def diff_published(
    rendered: dict[str, str], repos: dict[str, str], *, against: Path | None = None
) -> list[CardDiff]:
    """Diffs of each rendered card; with `against`, only the main card against that file."""
    if against is not None:
        try:
            old = against.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            from medrelease.core.errors import UsageError

            raise UsageError(
                f"--diff-against: cannot read {against} ({type(exc).__name__})"
            ) from None
        return [diff_texts("model", str(against), old, rendered["model"])]
    return [
        diff_texts(card, repos[card], fetch_published_readme(repos[card]), text)
        for card, text in rendered.items()
    ]
