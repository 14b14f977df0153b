"""`medrelease publish --dry-run | head`: the reader leaving early is not a failure (exit 0)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from releases import BuiltRelease


@pytest.mark.slow  # two CLI processes (start-up imports huggingface_hub)
def test_dry_run_into_a_closed_pipe_exits_0(release: BuiltRelease, tmp_path: Path) -> None:
    export = tmp_path / "export"
    args = [sys.executable, "-m", "medrelease.cli", "publish", str(release.recipe),
            "--workdir", str(release.workdir), "-t", f"dir://{export}", "--dry-run"]  # fmt: skip
    # `| head -0`: the reader is gone before the plan is written, so the first write breaks
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err and "error" not in err, err
    assert not export.exists()

    # and through a real shell pipe, as a user types it
    shell = subprocess.run(
        ["bash", "-o", "pipefail", "-c", '"$@" | head -n 1', "sh", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert "publish plan" in shell.stdout
