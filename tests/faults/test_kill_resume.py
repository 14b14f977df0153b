"""SIGKILL / SIGINT at a random point of merge, quantize and publish.

After the signal: no half-written artifact in place and a consistent manifest (valid JSON,
every recorded output present with its sha256). The next run sweeps leftovers and completes.
The kill point is random (seeded per test, see conftest `rng`); each test records whether
the signal hit a running process, so the reliability report counts real injections.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from faults.faultkit import (
    check_consistent,
    check_safetensors_complete,
    cli,
    kill_at_random_point,
    run,
    temp_leftovers,
)
from helpers import HUB_TOKEN, LINEAR, write_recipe
from publish.pubhelpers import REPO, release_for_publish

pytestmark = pytest.mark.slow
# SIGKILL at a random point in `make test`; SIGINT (exit 130, no traceback, a consistent
# build) in the heavy tier (make test-heavy, in CI)
SIGS = ["SIGKILL", pytest.param("SIGINT", marks=pytest.mark.heavy)]


def after_signal(kill: Any, root: Path) -> dict[str, Any] | None:
    if kill.hit and kill.signal == "SIGINT":  # graceful: exit 130, no traceback
        assert kill.returncode == 130, kill.stderr[-2000:]
        assert "Traceback" not in kill.stderr
    manifest = check_consistent(root)
    if (root / "merged").is_dir():
        check_safetensors_complete(root / "merged")
    return manifest


# SIGINT of a merge is covered by tests/merge/test_kill.py; here: SIGKILL at a random point
@pytest.mark.parametrize("sig", ["SIGKILL"])
def test_merge(tmp_path: Path, llama, sig: str, rng, fault_log) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {"sft": llama["sft"], "grpo": llama["grpo"]}, LINEAR)
    workdir = tmp_path / "w"
    root = workdir / "tiny-release"
    kill = kill_at_random_point(
        cli("merge", recipe, "--workdir", workdir), sig=sig, rng=rng,
        started=lambda: bool(temp_leftovers(root)), window_s=3.0,
        reset=lambda: shutil.rmtree(workdir, ignore_errors=True),
    )  # fmt: skip
    fault_log.add("kill:merge", signal=sig, delay_s=kill.delay_s, hit=kill.hit,
                  returncode=kill.returncode, attempts=kill.attempts)  # fmt: skip
    after_signal(kill, root)
    again = run(cli("merge", recipe, "--workdir", workdir, "--force"))
    assert again.returncode == 0, again.stderr[-2000:]
    manifest = check_consistent(root)
    assert manifest is not None and manifest["steps"]["merge"]["status"] == "done"
    assert "merged/model.safetensors" in manifest["steps"]["merge"]["outputs"]
    assert not temp_leftovers(root)


def quantize_release(tmp_path: Path, model: Path) -> tuple[Path, Path]:
    workdir = tmp_path / "w"
    shutil.copytree(model, workdir / "tiny-release" / "merged")
    recipe = write_recipe(
        tmp_path / "r.yaml", {"base": model},
        {"merge_method": "linear", "models": [{"model": "base", "parameters": {"weight": 1.0}}]},
        quantize={"gguf": {"types": ["Q8_0"]}},
    )  # fmt: skip
    return recipe, workdir


def _undo_quantize(root: Path) -> None:
    """Back to 'merged, not quantized' after a run the signal missed."""
    shutil.rmtree(root / "quant", ignore_errors=True)
    (root / "manifest.json").unlink(missing_ok=True)


@pytest.mark.parametrize("sig", SIGS)
def test_quantize_gguf(tmp_path: Path, llama, sig: str, rng, fault_log) -> None:
    recipe, workdir = quantize_release(tmp_path, llama["base"])
    root = workdir / "tiny-release"
    kill = kill_at_random_point(
        cli("quantize", recipe, "--workdir", workdir), sig=sig, rng=rng,
        started=lambda: bool(temp_leftovers(root / "quant")), window_s=4.0,
        reset=lambda: _undo_quantize(root),
    )  # fmt: skip
    fault_log.add("kill:quantize", signal=sig, delay_s=kill.delay_s, hit=kill.hit,
                  returncode=kill.returncode, attempts=kill.attempts)  # fmt: skip
    manifest = after_signal(kill, root)
    for gguf in (root / "quant").rglob("*.gguf") if (root / "quant").is_dir() else []:
        if not any(part.startswith(".mr-tmp-") for part in gguf.parts):
            assert gguf.read_bytes()[:4] == b"GGUF", f"{gguf} is not a whole GGUF"
    if kill.hit:
        assert manifest is None or "quantize" not in manifest["steps"] or kill.returncode == 0
    again = run(cli("quantize", recipe, "--workdir", workdir))
    assert again.returncode == 0, again.stderr[-2000:]
    manifest = check_consistent(root)
    assert manifest is not None
    files = [f for q in manifest["steps"]["quantize"]["quants"] for f in q["files"]]
    assert any(f.endswith("Q8_0.gguf") for f in files)
    assert not temp_leftovers(root)


def _undo_publish(root: Path, endpoint: str, token: str) -> None:
    """Back to 'not published' after a run the signal missed: its repos and its record go."""
    from huggingface_hub import HfApi

    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    record = manifest["steps"].pop("publish", None) or {}
    api = HfApi(endpoint=endpoint, token=token)
    for repo in record.get("repos", []):
        api.delete_repo(repo["repo"], missing_ok=True)
    path.write_text(json.dumps(manifest, indent=2))


@pytest.mark.parametrize("sig", SIGS)
def test_publish(tmp_path: Path, llama, sig: str, rng, fault_log, monkeypatch, hub) -> None:
    from huggingface_hub import HfApi

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home-test"))
    release = release_for_publish(tmp_path, llama["base"])
    env = {"HF_TOKEN": HUB_TOKEN, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home"),
           "HF_HUB_DISABLE_XET": "1"}  # fmt: skip
    args = cli("publish", release.recipe, "--workdir", release.workdir, "--endpoint", hub.url)
    kill = kill_at_random_point(
        args,
        sig=sig,
        rng=rng,
        started=lambda: True,
        window_s=3.0,
        env=env,
        reset=lambda: _undo_publish(release.root, hub.url, HUB_TOKEN),
    )
    fault_log.add("kill:publish", signal=sig, delay_s=kill.delay_s, hit=kill.hit,
                  returncode=kill.returncode, attempts=kill.attempts)  # fmt: skip
    after_signal(kill, release.root)
    again = run(args, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    manifest = check_consistent(release.root)
    assert manifest is not None and manifest["steps"]["publish"]["status"] == "done"
    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    for repo in manifest["steps"]["publish"]["repos"]:
        info = api.model_info(repo["repo"], files_metadata=True)
        names = {s.rfilename for s in info.siblings or []}
        assert "README.md" in names and "manifest.json" in names
        tags = [t.name for t in api.list_repo_refs(repo["repo"]).tags]
        assert "v0.1.0" in tags
        assert len(api.list_repo_commits(repo["repo"])) <= 3  # init + one release commit
    published = json.loads(
        Path(api.hf_hub_download(REPO, "manifest.json", local_dir=tmp_path / "dl"))
        .read_text()
    )  # fmt: skip
    assert published["steps"]["merge"] == manifest["steps"]["merge"]
