"""`--diff` and Hub license reading against the project's local Hub server, over real HTTP."""

from __future__ import annotations

import json

import pytest

from card.card_fixture import RELEASE, release_for_cards
from helpers import HUB_TOKEN, run_cli

pytestmark = pytest.mark.slow  # the CLI's recipe loader imports mergekit


def _publish_readme(url: str, repo: str, text: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=url, token=HUB_TOKEN)
    api.create_repo(repo, exist_ok=True)
    api.upload_file(path_or_fileobj=text.encode(), path_in_repo="README.md", repo_id=repo)


def test_diff_against_the_published_cards(tmp_path, hub_default, capsys):
    recipe, workdir = release_for_cards(tmp_path)
    assert run_cli("card", recipe, "--workdir", workdir) == 0
    card = (workdir / RELEASE / "card" / "README.md").read_text()
    gguf = (workdir / RELEASE / "card" / "gguf" / "README.md").read_text()
    _publish_readme(hub_default.url, "medrelease-tests/tiny-med", card.replace("0.5133", "0.4999"))
    _publish_readme(hub_default.url, "medrelease-tests/tiny-med-GGUF", gguf)
    capsys.readouterr()

    assert run_cli("card", recipe, "--workdir", workdir, "--diff", "--json") == 0
    diffs = {d["card"]: d for d in json.loads(capsys.readouterr().out)["diff"]}
    assert diffs["model"]["status"] == "changed"
    assert "-| `mmlu_medical/acc` | 0.4999" in diffs["model"]["diff"]
    assert diffs["gguf"]["status"] == "unchanged"
    assert diffs["awq"]["status"] == "new"  # no AWQ repo yet
    assert HUB_TOKEN not in json.dumps(diffs)

    assert run_cli("card", recipe, "--workdir", workdir, "--diff") == 0
    out = capsys.readouterr().out
    assert "model card: changed against medrelease-tests/tiny-med" in out
    assert "awq card: new" in out


def test_hub_stage_license_is_read_from_the_hub(hub_default):
    from medrelease.card.licenses import _hub_license

    _publish_readme(hub_default.url, "org/base", "---\nlicense: Apache-2.0\n---\n# base\n")
    _publish_readme(hub_default.url, "org/nolicense", "# nothing stated\n")
    assert _hub_license("org/base", None) == "apache-2.0"
    assert _hub_license("org/nolicense", None) is None
    assert _hub_license("org/missing", None) is None
