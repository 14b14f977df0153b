"""The release folder's `.lock` is removed when the run ends, and removing it stays safe."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from medrelease.core.lock import release_lock


def test_lock_file_is_removed_when_the_run_ends(tmp_path: Path) -> None:
    with release_lock(tmp_path):
        assert (tmp_path / ".lock").is_file()
        with release_lock(tmp_path):  # re-entered by a step inside `release`
            pass
        assert (tmp_path / ".lock").is_file(), "held until the outermost run ends"
    assert not (tmp_path / ".lock").exists()
    with pytest.raises(RuntimeError), release_lock(tmp_path):
        raise RuntimeError("the step failed")
    assert not (tmp_path / ".lock").exists()


def test_a_lock_file_replaced_meanwhile_is_not_trusted(tmp_path: Path) -> None:
    """A file opened just before its holder removed it is stale: locking it would let two
    runs in at once. The run locks the file the path names now."""
    lock = tmp_path / ".lock"
    lock.write_text("")
    stale = lock.open()
    fcntl.flock(stale.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # a holder of the old file
    lock.unlink()
    lock.write_text("")  # another run's fresh lock file, unheld
    try:
        with release_lock(tmp_path):
            other = lock.open()
            with pytest.raises(BlockingIOError):  # the current file is the one held
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            other.close()
    finally:
        stale.close()


def test_a_stale_file_opened_before_removal_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race itself: the holder removes `.lock` between our open and our flock."""
    import medrelease.core.lock as lock_module

    lock = tmp_path / ".lock"
    lock.write_text("")
    real_flock = fcntl.flock
    calls = []

    def flock_after_removal(fd: int, op: int) -> None:
        if not calls:  # the first attempt: the holder ends and removes the file meanwhile
            lock.unlink()
        calls.append(op)
        real_flock(fd, op)

    monkeypatch.setattr(lock_module.fcntl, "flock", flock_after_removal)
    with release_lock(tmp_path):
        assert lock.is_file() and "pid" in lock.read_text()
    assert len([op for op in calls if op & fcntl.LOCK_EX]) == 2, calls
    assert not lock.exists()
