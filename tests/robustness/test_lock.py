"""Two medrelease processes on one release folder: the second gets a clear message, exit 7."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from helpers import write_recipe

HOLD = """
import sys, time
from pathlib import Path
from medrelease.core.lock import release_lock
with release_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_process_is_refused(tmp_path: Path):
    release = tmp_path / "w" / "tiny-release"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(release)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        recipe = write_recipe(
            tmp_path / "r.yaml",
            {"a": "./a", "b": "./b"},
            {"merge_method": "linear", "models": [{"model": "a"}, {"model": "b"}],
             "parameters": {"weight": 0.5}},
        )  # fmt: skip
        t0 = time.time()
        # a second process, as a user would start it: its stderr is its own, whatever the
        # tests before this one did to this process's console
        second = subprocess.run(
            [str(Path(sys.executable).parent / "medrelease"), "merge", str(recipe),
             "--workdir", str(tmp_path / "w")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode == 7, second.stderr
        assert time.time() - t0 < 30, "the second process must not wait for the first"
        err = second.stderr
        assert f"in use by medrelease pid {holder.pid}" in err
        assert "another --workdir" in err
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_reentrant_within_a_process(tmp_path: Path):
    from medrelease.core.lock import release_lock

    with release_lock(tmp_path), release_lock(tmp_path):
        pass
    with release_lock(tmp_path):  # released properly afterwards
        pass
