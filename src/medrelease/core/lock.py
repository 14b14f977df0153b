"""One process at a time per release folder: a second `medrelease` gets a clear message."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

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
    try:
        fh = open(lock_path, "a+")  # noqa: SIM115 - held for the whole step, closed below
    except OSError as exc:
        raise unwritable(release_dir, exc) from None
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise EnvironmentProblem(
                f"{release_dir} is in use by {holder}",
                hint="wait for the other medrelease run to finish, or use another --workdir",
            ) from None
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
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()
