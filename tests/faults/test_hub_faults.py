"""Hub failures during upload: 5xx and dropped connections are retried, 4xx are not.

The local Hub (medrelease.localhub) runs in this process; `Fault` answers chosen requests with
an error status, and a patched handler drops chosen connections without any answer. Back-off
sleeps are recorded instead of slept, so the tests stay fast and can count the retries.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest

from faults.faultkit import check_consistent
from helpers import HUB_TOKEN, run_cli
from publish.pubhelpers import REPO, release_for_publish


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    import medrelease.publish.hub as hubmod

    # only the publisher's back-off is skipped, not every sleep in the process
    monkeypatch.setattr(hubmod, "time", SimpleNamespace(sleep=waits.append))
    return waits


def publish(release: Any, hub: Any) -> int:
    return run_cli("publish", release.recipe, "--workdir", release.workdir, "--endpoint", hub.url)


def commits(hub: Any, repo: str) -> int:
    from huggingface_hub import HfApi

    return len(HfApi(endpoint=hub.url, token=HUB_TOKEN).list_repo_commits(repo))


@pytest.mark.parametrize(
    ("path_part", "status", "times"),
    [("/commit/", 500, 2), ("/commit/", 503, 1), ("/preupload/", 502, 1), ("/_lfs/", 500, 1)],
)
def test_server_errors_are_retried(
    tmp_path, llama, hub, lfs_only, sleeps, capsys, path_part, status, times, fault_log
):
    from medrelease.localhub.server import Fault

    release = release_for_publish(tmp_path, llama["base"])
    fault = Fault(path_part, status, times=times)
    hub.state.faults.append(fault)
    fault_log.add(f"hub:{status}", path=path_part, times=times)
    assert publish(release, hub) == 0, capsys.readouterr().err
    assert fault.times == 0, "the fault was never hit"
    if path_part == "/commit/":  # uploads are retried inside huggingface_hub (http_backoff)
        assert len(sleeps) == times, "medrelease's own retry loop backs off once per failure"
    manifest = check_consistent(release.root)
    assert manifest is not None and manifest["steps"]["publish"]["status"] == "done"
    assert commits(hub, REPO) == 2  # the repo's initial commit + exactly one release commit


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_client_errors_are_not_retried(
    tmp_path, llama, hub, lfs_only, sleeps, capsys, status, fault_log
):
    from medrelease.localhub.server import Fault

    release = release_for_publish(tmp_path, llama["base"])
    fault = Fault("/commit/", status, times=5)
    hub.state.faults.append(fault)
    fault_log.add(f"hub:{status}", path="/commit/")
    assert publish(release, hub) == 6
    err = capsys.readouterr().err
    assert fault.times == 4, "a client error must be tried exactly once"
    assert not [s for s in sleeps if s >= 1], "no back-off for a 4xx"
    assert "Traceback" not in err and f"({status}" in err
    manifest = check_consistent(release.root)
    assert manifest is not None and (manifest["steps"].get("publish") or {}).get("status") != "done"


def test_persistent_server_error_gives_up_with_clear_message(
    tmp_path, llama, hub, lfs_only, sleeps, capsys, fault_log
):
    from medrelease.localhub.server import Fault

    release = release_for_publish(tmp_path, llama["base"])
    fault = Fault("/commit/", 503, times=100)
    hub.state.faults.append(fault)
    fault_log.add("hub:503-persistent", path="/commit/")
    assert publish(release, hub) == 6
    err = capsys.readouterr().err
    assert "server error (503)" in err and "after 4 attempts" in err, err
    assert 100 - fault.times == 4  # 1 try + 3 retries
    assert commits(hub, REPO) <= 1


@pytest.fixture
def drop_connections(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Patch the local Hub's handler: close chosen requests' connections without answering."""
    from medrelease.localhub.server import HubHandler

    plan: dict[str, int] = {}
    original = HubHandler._dispatch

    def dispatch(self: Any, method: str) -> None:
        for part, left in plan.items():
            if left > 0 and part in self.path:
                plan[part] = left - 1
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
        original(self, method)

    monkeypatch.setattr(HubHandler, "_dispatch", dispatch)
    return plan


@pytest.mark.parametrize("path_part", ["/commit/", "/preupload/", "/_lfs/"])
def test_dropped_connections_are_retried(
    tmp_path, llama, hub, lfs_only, sleeps, capsys, drop_connections, path_part, fault_log
):
    release = release_for_publish(tmp_path, llama["base"])
    drop_connections[path_part] = 1
    fault_log.add("hub:dropped-connection", path=path_part)
    assert publish(release, hub) == 0, capsys.readouterr().err
    assert drop_connections[path_part] == 0, "the drop was never hit"
    manifest = check_consistent(release.root)
    assert manifest is not None and manifest["steps"]["publish"]["status"] == "done"
    assert commits(hub, REPO) == 2


def test_client_error_message_says_how_to_fix(tmp_path, llama, hub, lfs_only, sleeps, capsys):
    from medrelease.localhub.server import Fault

    release = release_for_publish(tmp_path, llama["base"])
    hub.state.faults.append(Fault("/commit/", 400, times=1))
    assert publish(release, hub) == 6
    assert "fix:" in capsys.readouterr().err
