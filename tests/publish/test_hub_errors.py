"""Each Hub failure maps to one clear, token-free message; only transient ones are retried."""

from __future__ import annotations

import httpx
import pytest

from medrelease.publish.hub_errors import hub_error, is_transient

CASES = [
    (401, "rejected the token (401 Unauthorized)", False),
    (403, "may not write to org/m (403 Forbidden)", False),
    (404, "was not found on http://hub (404)", False),
    (409, "conflict on org/m (409)", False),
    (412, "changed while publishing (412", True),
    (429, "rate-limited the upload to org/m (429)", True),
    (500, "server error (500)", True),
    (503, "server error (503)", True),
]


@pytest.mark.parametrize(("status", "text", "transient"), CASES)
def test_status_messages(status: int, text: str, transient: bool) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx.Request("POST", "http://hub/api/models/org/m/commit/main")
    response = httpx.Response(status, request=request, headers={"X-Error-Message": "nope"})
    exc = HfHubHTTPError(f"{status} error", response=response)
    err = hub_error(exc, repo_id="org/m", endpoint="http://hub")
    assert text in str(err)
    assert "(server: nope)" in str(err)
    assert err.hint and err.exit_code == 6
    assert is_transient(exc) is transient


def test_network_error_is_transient_and_named() -> None:
    exc = httpx.ConnectError("refused")
    err = hub_error(exc, repo_id="org/m", endpoint="http://hub", attempts=3)
    assert is_transient(exc)
    assert "cannot reach http://hub" in str(err) and "after 3 attempts" in str(err)


def test_server_message_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    token = "hf_SecretEchoedBackByAProxy1234567890"
    monkeypatch.setenv("HF_TOKEN", token)
    response = httpx.Response(
        400, request=httpx.Request("GET", "http://hub"), headers={"X-Error-Message": token}
    )
    err = hub_error(HfHubHTTPError("x", response=response), repo_id="o/m", endpoint="http://hub")
    assert token not in str(err)
