"""`--diff`: compare the rendered cards with what is published.

The published README is fetched with huggingface_hub's `hf_hub_download`; here it is
monkeypatched (no local Hub server was available when this was written), and `--diff-against
FILE` compares with a local file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from card.card_fixture import release_for_cards
from helpers import run_cli
from medrelease.card.diff import diff_published, diff_texts, fetch_published_readme
from medrelease.core.errors import EnvironmentProblem


@pytest.mark.slow  # the CLI loads the recipe with mergekit
def test_diff_against_file_via_cli(tmp_path, capsys):
    recipe, workdir = release_for_cards(tmp_path)
    assert run_cli("card", recipe, "--workdir", workdir) == 0
    published = (workdir / "tiny-med" / "card" / "README.md").read_text()
    old = tmp_path / "published.md"
    old.write_text(published.replace("0.5133", "0.4999"))
    capsys.readouterr()
    assert run_cli("card", recipe, "--workdir", workdir, "--diff-against", old, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    (d,) = summary["diff"]
    assert d["status"] == "changed"
    assert "-| `mmlu_medical/acc` | 0.4999" in d["diff"]
    assert "+| `mmlu_medical/acc` | 0.5133" in d["diff"]


def test_unchanged_card():
    d = diff_texts("model", "org/x", "same\n", "same\n")
    assert d.status == "unchanged" and d.diff == ""


def test_diff_fetches_each_repo_readme(monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    calls = []

    def fake_download(repo_id, filename, **kw):
        calls.append((repo_id, filename, kw.get("endpoint"), bool(kw.get("cache_dir"))))
        if repo_id.endswith("-AWQ"):
            from huggingface_hub.errors import RepositoryNotFoundError

            raise RepositoryNotFoundError("no such repo", response=_response(404))
        p = tmp_path / f"{repo_id.replace('/', '_')}.md"
        p.write_text("old card\n")
        return str(p)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    monkeypatch.setattr("medrelease.card.diff._repo_exists", lambda repo, endpoint: True)
    repos = {"model": "o/m", "gguf": "o/m-GGUF", "awq": "o/m-AWQ"}
    diffs = diff_published({"model": "new\n", "gguf": "old card\n", "awq": "x\n"}, repos)
    assert [(d.card, d.status) for d in diffs] == [
        ("model", "changed"), ("gguf", "unchanged"), ("awq", "new")]  # fmt: skip
    assert calls[0] == ("o/m", "README.md", "http://127.0.0.1:9", True)


def test_unreachable_hub_is_a_clear_error(monkeypatch):
    from medrelease.core.errors import PublishError

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with pytest.raises(PublishError, match="cannot reach the Hub"):
        fetch_published_readme("o/m")


def test_offline_diff_says_how_to_compare_locally(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(EnvironmentProblem) as info:
        fetch_published_readme("o/m")
    assert "--diff-against" in (info.value.hint or "")


def _response(status: int):
    import httpx

    return httpx.Response(status, request=httpx.Request("GET", "http://hub/x"))


def test_diff_against_missing_file(tmp_path):
    from medrelease.core.errors import UsageError

    with pytest.raises(UsageError):
        diff_published({"model": "x"}, {"model": "o/m"}, against=Path(tmp_path / "nope.md"))
