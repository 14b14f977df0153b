"""Two `medrelease release` processes on one workdir: the second is refused, the first finishes.

The second process must not wait and must not touch the folder: exit 7 with a message naming
the holder, and the first run's manifest ends consistent.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from faults.faultkit import check_consistent, cli, temp_leftovers
from helpers import LINEAR, write_recipe


@pytest.mark.slow
def test_second_release_is_refused_and_first_completes(tmp_path: Path, llama, fault_log) -> None:
    stages = {"sft": llama["sft"], "grpo": llama["grpo"]}
    recipe = write_recipe(
        tmp_path / "r.yaml", stages, LINEAR, card={"stage_licenses": dict.fromkeys(stages, "mit")}
    )
    workdir = tmp_path / "w"
    lock = workdir / "tiny-release" / ".lock"
    # --only merge: a recipe without gates cannot render a card, and the lock is the same
    args = cli("release", recipe, "--workdir", workdir, "--only", "merge")
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        if lock.is_file() and f"pid {first.pid}" in lock.read_text():
            break
        time.sleep(0.02)
    assert first.poll() is None, "the first release finished before the second could start"
    fault_log.add("concurrency:second-release")
    second = subprocess.run(args, capture_output=True, text=True, env=os.environ.copy(),
                            timeout=120)  # fmt: skip
    _, err = first.communicate(timeout=600)
    assert second.returncode == 7, second.stderr
    assert f"in use by medrelease pid {first.pid}" in second.stderr
    assert "fix:" in second.stderr and "Traceback" not in second.stderr
    assert first.returncode == 0, err[-3000:]
    manifest = check_consistent(workdir / "tiny-release")
    assert manifest is not None and manifest["steps"]["merge"]["status"] == "done"
    assert not temp_leftovers(workdir / "tiny-release")
