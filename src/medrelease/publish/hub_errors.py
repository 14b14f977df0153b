"""Turn what the Hub (or the network) says into one clear message, and say when to retry.

Each status gets the sentence a release engineer needs; the raw server message is added
(redacted: it can never carry our token, but we do not rely on that).
"""

from __future__ import annotations

from medrelease.core.errors import PublishError
from medrelease.core.secrets import redact

TRANSIENT_STATUS = {429, 500, 502, 503, 504}


def status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return int(code) if isinstance(code, int) else None


def _server_says(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    text = headers.get("X-Error-Message") if hasattr(headers, "get") else None
    return f" (server: {redact(str(text))})" if text else ""


def is_network_error(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Worth another try: rate limits, server errors, dropped connections, lost races."""
    status = status_of(exc)
    if status is not None:
        return status in TRANSIENT_STATUS or status == 412
    return is_network_error(exc)


def hub_error(
    exc: BaseException, *, repo_id: str, endpoint: str, attempts: int = 1
) -> PublishError:
    status = status_of(exc)
    said = _server_says(exc)
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if status == 401:
        return PublishError(
            f"the Hub at {endpoint} rejected the token (401 Unauthorized) while publishing "
            f"{repo_id}{said}",
            hint="set HF_TOKEN to a valid token with write access, or run `hf auth login`; "
            "the token is read only from the environment or the login cache",
        )
    if status == 403:
        return PublishError(
            f"the token may not write to {repo_id} (403 Forbidden){said}",
            hint="use a write token, and make sure its user belongs to the organization "
            "that owns the repo (fine-grained tokens need 'write' on that namespace)",
        )
    if status == 404:
        return PublishError(
            f"{repo_id} or one of its revisions was not found on {endpoint} (404){said}",
            hint="check release.repo in the recipe and that the namespace exists",
        )
    if status == 409:
        return PublishError(
            f"conflict on {repo_id} (409){said}",
            hint="a tag or branch with that name already exists; versions are immutable, so "
            "bump release.version to publish changed content",
        )
    if status == 412:
        return PublishError(
            f"{repo_id} changed while publishing (412: its main branch moved){tried}{said}",
            hint="someone else pushed to the repo; run the same command again to publish "
            "on top of the new state",
        )
    if status == 429:
        return PublishError(
            f"the Hub rate-limited the upload to {repo_id} (429){tried}{said}",
            hint="wait a few minutes and run the same command again: what was uploaded is kept",
        )
    if status is not None and status >= 500:
        return PublishError(
            f"the Hub failed with a server error ({status}) while publishing {repo_id}"
            f"{tried}{said}",
            hint="run the same command again later: uploaded files are kept and not re-sent",
        )
    if status is not None:
        return PublishError(
            f"the Hub refused the upload to {repo_id} ({status}){said}",
            hint="nothing was committed; check the files and the publish settings in the "
            "recipe, then run the same command again",
        )
    if is_network_error(exc):
        return PublishError(
            f"cannot reach {endpoint} while publishing {repo_id}{tried}: "
            f"{redact(type(exc).__name__)}",
            hint="check the network / HF_ENDPOINT; run again to resume where it stopped",
        )
    return PublishError(
        f"publishing {repo_id} failed: {redact(type(exc).__name__)}: {redact(str(exc))[:300]}",
        hint="run again to resume; add --debug for the traceback",
    )
