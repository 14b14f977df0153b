"""`--diff` and Hub license reading against the project's local Hub server, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from card_fixture import RELEASE, make_release

from helpers import run_cli

TOKEN = "hf_cardtestsTOKENabcdefghijklmnop"
pytestmark = pytest.mark.slow  # the CLI's recipe loader imports mergekit


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_hf_home: Path) -> Iterator[Any]:
    from huggingface_hub import constants

    from medrelease.localhub import serve

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    server = serve(tmp_path / "hub", tokens={TOKEN: "alice"})
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    try:
        yield server
    finally:
        server.stop()


def _publish_readme(url: str, repo: str, text: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=url, token=TOKEN)
    api.create_repo(repo, exist_ok=True)
    api.upload_file(path_or_fileobj=text.encode(), path_in_repo="README.md", repo_id=repo)


def test_diff_against_the_published_cards(tmp_path, hub, capsys):
    recipe, workdir = make_release(tmp_path)
    assert run_cli("card", recipe, "--workdir", workdir) == 0
    card = (workdir / RELEASE / "card" / "README.md").read_text()
    gguf = (workdir / RELEASE / "card" / "gguf" / "README.md").read_text()
    _publish_readme(hub.url, "medrelease-tests/tiny-med", card.replace("0.5133", "0.4999"))
    _publish_readme(hub.url, "medrelease-tests/tiny-med-GGUF", gguf)
    capsys.readouterr()

    assert run_cli("card", recipe, "--workdir", workdir, "--diff", "--json") == 0
    diffs = {d["card"]: d for d in json.loads(capsys.readouterr().out)["diff"]}
    assert diffs["model"]["status"] == "changed"
    assert "-| `mmlu_medical/acc` | 0.4999" in diffs["model"]["diff"]
    assert diffs["gguf"]["status"] == "unchanged"
    assert diffs["awq"]["status"] == "new"  # no AWQ repo yet
    assert TOKEN not in json.dumps(diffs)

    assert run_cli("card", recipe, "--workdir", workdir, "--diff") == 0
    out = capsys.readouterr().out
    assert "model card: changed against medrelease-tests/tiny-med" in out
    assert "awq card: new" in out


def test_hub_stage_license_is_read_from_the_hub(hub):
    from medrelease.card.licenses import _hub_license

    _publish_readme(hub.url, "org/base", "---\nlicense: Apache-2.0\n---\n# base\n")
    _publish_readme(hub.url, "org/nolicense", "# nothing stated\n")
    assert _hub_license("org/base", None) == "apache-2.0"
    assert _hub_license("org/nolicense", None) is None
    assert _hub_license("org/missing", None) is None
