"""`medrelease publish` from the command line: exit codes, output, dir:// export, no token leaks."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from helpers import HUB_TOKEN, run_cli
from publish.pubhelpers import REPO
from releases import BuiltRelease


def cli(release: BuiltRelease, *args: str) -> int:
    return run_cli("publish", str(release.recipe), "--workdir", str(release.workdir), *args)


def test_dir_export_has_the_repo_layout_and_is_idempotent(
    release: BuiltRelease, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    assert cli(release, "--target", f"dir://{out}", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in summary["repos"]] == ["exported"] * 3
    # a first export adds every file and changes none (the same accounting as a Hub commit)
    for r in summary["repos"]:
        assert len(r["added"]) == r["files"] and r["changed"] == r["deleted"] == [], r
    main = out / REPO
    assert sorted(p.name for p in main.iterdir()) == sorted(
        ["README.md", "manifest.json", "metrics.png"]
        + [p.name for p in (release.root / "merged").iterdir()]
    )
    recorded = release.manifest()["steps"]["merge"]["outputs"]
    for rel, rec in recorded.items():
        got = hashlib.sha256((main / rel.removeprefix("merged/")).read_bytes()).hexdigest()
        assert got == rec["sha256"], rel
    assert sorted(p.name for p in (out / f"{REPO}-GGUF").iterdir()) == [
        "README.md", "manifest.json", "tiny-release-Q8_0.gguf",
    ]  # fmt: skip
    assert (out / f"{REPO}-AWQ" / "model.safetensors").is_file()

    assert cli(release, "--target", f"dir://{out}", "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in again["repos"]] == ["unchanged"] * 3
    assert again["changed_repos"] == 0

    # one file edited in the export: exported again, that file counted as changed
    (main / "README.md").write_text("edited\n")
    assert cli(release, "--target", f"dir://{out}", "--json") == 0
    third = json.loads(capsys.readouterr().out)["repos"][0]
    assert (third["status"], third["added"], third["changed"]) == ("exported", [], ["README.md"])
    # the dry run compares with the folder too: nothing new, nothing changed
    assert cli(release, "--target", f"dir://{out}", "--dry-run", "--json") == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert {f["status"] for repo in plan for f in repo["files"]} == {"unchanged"}


def test_failed_gate_exit_code_and_message(
    release: BuiltRelease, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release.set_gate(False)
    assert cli(release, "--target", f"dir://{tmp_path / 'x'}") == 4
    err = capsys.readouterr().err
    assert "refusing to publish" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_unknown_target_is_a_usage_error(release: BuiltRelease, capsys: Any) -> None:
    assert cli(release, "--target", "s3://bucket") == 2
    assert "unknown publish target" in capsys.readouterr().err


def test_dry_run_prints_plan_table(release: BuiltRelease, hub: Any, capsys: Any) -> None:
    assert cli(release, "--endpoint", hub.url, "--dry-run") == 0
    out = capsys.readouterr().out
    for text in ("publish plan", f"{REPO}-GGUF", "tiny-release-Q8_0.gguf", "293.0 KB", "v0.1.0"):
        assert text in out, text
    assert "card diff for" in out
    assert not list((hub.root / "repos").rglob("*.json"))


def test_token_never_reaches_output_logs_or_files(
    release: BuiltRelease,
    hub: Any,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Publish (success, re-run, dry run, bad token, debug logging) and grep everything."""
    caplog.set_level(logging.DEBUG)
    outputs = []
    assert cli(release, "--endpoint", hub.url) == 0
    assert cli(release, "--endpoint", hub.url, "--json") == 0
    assert cli(release, "--endpoint", hub.url, "--dry-run") == 0
    outputs.append(capfd.readouterr())
    bad = "hf_AnotherSecretTokenThatIsWrong987654"
    monkeypatch.setenv("HF_TOKEN", bad)
    assert cli(release, "--endpoint", hub.url) == 6
    outputs.append(capfd.readouterr())
    text = "".join(o.out + o.err for o in outputs) + caplog.text
    assert "401" in text  # the failure was reported ...
    for secret in (HUB_TOKEN, bad):
        assert secret not in text  # ... without the token
        for root in (release.workdir, hub.root, tmp_path):
            for path in root.rglob("*"):
                if path.is_file():
                    assert secret.encode() not in path.read_bytes(), path


def test_absent_quant_families_are_skipped(
    release: BuiltRelease, tmp_path: Path, capsys: Any
) -> None:
    data = release.manifest()
    del data["steps"]["quantize"]
    release.write_manifest(data)
    out = tmp_path / "export"
    assert cli(release, "--target", f"dir://{out}", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert [r["repo"] for r in summary["repos"]] == [REPO]
    assert not (out / f"{REPO}-GGUF").exists()
