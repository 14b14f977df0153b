"""Two medrelease processes on one release folder: the second gets a clear message, exit 7."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from helpers import run_cli, write_recipe

HOLD = """
import sys, time
from pathlib import Path
from medrelease.core.lock import release_lock
with release_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_process_is_refused(tmp_path: Path, capfd):
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
        assert run_cli("merge", recipe, "--workdir", tmp_path / "w") == 7
        assert time.time() - t0 < 30, "the second process must not wait for the first"
        # capfd, not capsys: a console made by an earlier test in this process may hold the
        # stderr it saw then; the message must reach fd 2 either way
        err = capfd.readouterr().err
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
