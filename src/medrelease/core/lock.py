"""One process at a time per release folder: a second `medrelease` gets a clear message.

The lock is `flock` on `<release>/.lock`, and the file is removed when the run ends, so a
finished release folder holds only artifacts. Removing a lock file is safe only with the
protocol used here: the holder unlinks it *before* unlocking, and a process that obtains the
lock checks that the path still names the file it locked (a file it opened just before the
holder unlinked it is stale: it retries on a fresh one).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from medrelease.core.errors import EnvironmentProblem

# Locks this process already holds (path -> depth): the pipeline holds the lock for a whole
# release and each step takes it again; flock would block on a second descriptor.
_held: dict[str, int] = {}


def unwritable(release_dir: Path, exc: OSError) -> EnvironmentProblem:
    """The one message for a release folder that cannot be created or written."""
    why = exc.strerror or type(exc).__name__
    return EnvironmentProblem(
        f"cannot write the release folder {release_dir}: {why}",
        hint="choose a writable --workdir (not a file, not a read-only mount); "
        "`medrelease status` reads a read-only build without writing to it",
    )


def _same_file(fh: IO[str], path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fh.fileno())
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _acquire(release_dir: Path, lock_path: Path) -> IO[str]:
    """The locked, current `.lock` file, or EnvironmentProblem naming its holder."""
    while True:
        try:
            fh = open(lock_path, "a+")  # noqa: SIM115 - held for the whole step, closed by caller
        except OSError as exc:
            raise unwritable(release_dir, exc) from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise EnvironmentProblem(
                f"{release_dir} is in use by {holder}",
                hint="wait for the other medrelease run to finish, or use another --workdir",
            ) from None
        except BaseException:
            fh.close()
            raise
        if _same_file(fh, lock_path):
            return fh
        fh.close()  # the previous holder removed it after we opened it: lock the new one


@contextlib.contextmanager
def release_lock(release_dir: Path) -> Iterator[None]:
    try:
        release_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(release_dir, exc) from None
    lock_path = release_dir / ".lock"
    key = str(lock_path.resolve())
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    fh = _acquire(release_dir, lock_path)
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"medrelease pid {os.getpid()}")
        fh.flush()
        _held[key] = 1
        try:
            yield
        finally:
            _held.pop(key, None)
    finally:
        # unlink while still holding the lock (see the module docstring), then unlock
        with contextlib.suppress(OSError):
            if _same_file(fh, lock_path):
                lock_path.unlink()
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()
