"""core/heap.py: memory freed in a fragmented glibc heap goes back to the system."""

from __future__ import annotations

import subprocess
import sys

import pytest

# In a fresh interpreter: blocks of 3 MiB come from the heap once glibc's mmap threshold has
# been raised (by freeing a 4 MiB block), with a live 200 KiB block between any two, so the
# freed 3 MiB blocks are holes glibc keeps. Prints RSS (MiB) after the frees, then after
# give_back_freed_memory(); with FIXED_MMAP_THRESHOLD_ENV the blocks are mappings of their own.
PROGRAM = """
import sys
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) >> 10
big = bytearray(4 << 20); del big
blocks, pins = [], []
for _ in range(60):
    blocks.append(bytearray(b"x" * (3 << 20)))
    pins.append(bytearray(b"y" * (200 << 10)))
del blocks
freed = rss()
from medrelease.core.heap import give_back_freed_memory
give_back_freed_memory()
print(freed, rss())
"""


def _run(env: dict[str, str]) -> tuple[int, int]:
    import os

    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], env={**os.environ, **env}, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    freed, after = map(int, out.stdout.split())
    return freed, after


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_freed_heap_memory_goes_back() -> None:
    from medrelease.core.heap import FIXED_MMAP_THRESHOLD_ENV

    freed, after = _run({})
    assert freed - after > 120  # the 180 MiB of holes, kept by glibc until trimmed
    fixed, _ = _run(FIXED_MMAP_THRESHOLD_ENV)
    assert freed - fixed > 120  # never kept: each block was a mapping, unmapped when freed
