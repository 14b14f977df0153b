"""Time a command and its peak memory in a fresh process, and measure the disk.

Each run goes through `child_stats.py`, a small Python process that starts the command, waits
for it and reports `getrusage(RUSAGE_CHILDREN)`: the peak RSS of the command (the largest of
it and its waited-for descendants), not of this harness.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHILD = Path(__file__).with_name("child_stats.py")


@dataclass
class Run:
    wall_s: float
    max_rss_mib: float
    returncode: int
    tree_rss_mib: float = 0.0  # peak of the summed RSS over the process tree (child_stats.py)
    tree_peak_parts: dict[str, float] = field(default_factory=dict)  # MiB per process then


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def rss(self) -> float:
        return statistics.median(r.max_rss_mib for r in self.runs)

    def walls(self) -> str:
        return ", ".join(f"{r.wall_s:.2f}" for r in self.runs)


def run_measured(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Run:
    out = subprocess.run(
        [sys.executable, str(CHILD), *cmd],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )
    try:
        stats = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"measuring {cmd[0]} failed:\n{out.stderr[-3000:]}") from None
    if stats["returncode"] != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {stats['returncode']}:\n{stats.get('stderr_tail', '')}"
        )
    return Run(
        stats["wall_s"],
        stats["max_rss_kib"] / 1024,
        stats["returncode"],
        stats.get("tree_rss_kib", 0) / 1024,
        {k: round(v / 1024) for k, v in stats.get("tree_peak_parts", {}).items()},
    )


def side_by_side(
    a: Callable[[int], Run], b: Callable[[int], Run], repeats: int
) -> tuple[Series, Series]:
    """Alternate a and b so slow drifts in machine load hit both equally."""
    sa, sb = Series(), Series()
    for i in range(repeats):
        sa.runs.append(a(i))
        sb.runs.append(b(i))
    return sa, sb


def side_by_side3(
    a: Callable[[int], Run], b: Callable[[int], Run], c: Callable[[int], Run], repeats: int
) -> tuple[Series, Series, Series]:
    """side_by_side for three variants (e.g. cold medrelease, the plain tool, warm medrelease)."""
    sa, sb, sc = Series(), Series(), Series()
    for i in range(repeats):
        sa.runs.append(a(i))
        sb.runs.append(b(i))
        sc.runs.append(c(i))
    return sa, sb, sc


def drop_page_cache(folder: Path) -> None:
    """Start the next measure cold: this folder's files written out and dropped from the page
    cache (no root needed), so each tool reads them from the device, as after a download."""
    os.sync()
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def disk_speed(folder: Path, size_mib: int) -> tuple[float, float]:
    """(write MiB/s, read MiB/s) of a large fsync'd file, read back past the page cache."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "disk-probe.bin"
    block = os.urandom(8 * 1024 * 1024)
    n = max(1, size_mib // 8)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(n):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    write = n * 8 / (time.perf_counter() - t0)
    fd = os.open(path, os.O_RDONLY)
    try:  # drop this file's pages so the read comes from the device
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        t0 = time.perf_counter()
        while os.read(fd, 8 * 1024 * 1024):
            pass
        read = n * 8 / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return write, read
