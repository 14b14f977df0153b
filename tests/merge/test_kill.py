"""A merge killed midway leaves no merged/ folder; the next run cleans up and succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import LINEAR, write_recipe
from medrelease.core.atomic import TMP_PREFIX


def start_merge(recipe: Path, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "medrelease.cli", "merge", str(recipe), "--workdir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # a shell that backgrounds pytest makes children ignore SIGINT; restore the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.slow
# SIGKILL at a random point of a merge is tests/faults/test_kill_resume.py's; this one in the
# heavy tier (make test-heavy, in CI)
@pytest.mark.parametrize(
    "sig",
    [pytest.param(signal.SIGKILL, marks=pytest.mark.heavy), signal.SIGINT],
    ids=["SIGKILL", "SIGINT"],
)
def test_killed_merge_leaves_no_output(tmp_path: Path, llama, sig):
    recipe = write_recipe(tmp_path / "r.yaml", {"sft": llama["sft"], "grpo": llama["grpo"]}, LINEAR)
    workdir = tmp_path / "w"
    release = workdir / "tiny-release"
    proc = start_merge(recipe, workdir)
    deadline = time.time() + 120
    staged = []
    while time.time() < deadline and proc.poll() is None:
        if release.is_dir():
            staged = [p for p in release.iterdir() if p.name.startswith(f"{TMP_PREFIX}merged")]
            if staged and any(staged[0].iterdir()):
                break
        time.sleep(0.01)
    assert staged, "the merge never started writing its staging folder"
    os.kill(proc.pid, sig)
    code = proc.wait(timeout=60)
    assert code != 0
    assert not (release / "merged").exists()
    if sig == signal.SIGINT:  # graceful: the staging folder is removed at once
        assert not [p for p in release.iterdir() if p.name.startswith(TMP_PREFIX)]
        assert code == 130
        err = proc.stderr.read().decode()  # type: ignore[union-attr]
        assert "Traceback" not in err
        # one line saying what stopped and that nothing half-written was left; no lock left
        assert "interrupted: medrelease merge stopped" in err, err
        assert "nothing half-written was left in place" in err
        assert not (release / ".lock").exists()

    # the next run sweeps leftovers and completes
    again = subprocess.run(
        [sys.executable, "-m", "medrelease.cli", "merge", str(recipe), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert (release / "merged" / "model.safetensors").is_file()
    assert not [p for p in release.iterdir() if p.name.startswith(TMP_PREFIX)]
