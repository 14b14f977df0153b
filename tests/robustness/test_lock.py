"""Two medrelease processes on one release folder: the second gets a clear message, exit 7."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def lockable(release: Path) -> bool:
    """Whether another holder could take the lock now: a second open file description is what
    a second process gets (flock conflicts between descriptions, even within one process)."""
    with open(release / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return True


def test_lock_is_reentrant_within_a_process_and_released(tmp_path: Path):
    from medrelease.core.lock import release_lock

    with release_lock(tmp_path):
        assert not lockable(tmp_path)
        with release_lock(tmp_path):  # the pipeline holds it, and each step takes it again
            assert not lockable(tmp_path)
        assert not lockable(tmp_path)  # the inner exit leaves the outer holder's lock
    assert lockable(tmp_path)
    with release_lock(tmp_path):  # a real lock again, not a leftover depth count
        assert not lockable(tmp_path)
    assert lockable(tmp_path)


def test_lock_is_released_when_the_holder_fails(tmp_path: Path):
    from medrelease.core.lock import release_lock

    with pytest.raises(RuntimeError), release_lock(tmp_path):
        raise RuntimeError("the step failed")
    assert lockable(tmp_path)
    with pytest.raises(KeyboardInterrupt), release_lock(tmp_path), release_lock(tmp_path):
        raise KeyboardInterrupt  # Ctrl-C inside a step inside the pipeline
    assert lockable(tmp_path)
    with release_lock(tmp_path):
        assert not lockable(tmp_path)


@pytest.mark.parametrize("how", ["raises", "killed"])
def test_lock_is_released_when_the_holding_process_dies(tmp_path: Path, how: str):
    from medrelease.core.lock import release_lock

    script = HOLD if how == "killed" else HOLD.replace("time.sleep(60)", "raise SystemExit(3)")
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        if how == "killed":
            assert not lockable(tmp_path)
            holder.kill()  # SIGKILL: no finally block runs, the kernel drops the lock
        assert holder.wait(timeout=30) != 0
    finally:
        holder.kill()
        holder.wait()
    assert lockable(tmp_path)
    with release_lock(tmp_path):
        assert not lockable(tmp_path)
