"""Memory the process has freed: given back to the system, or kept for the next allocation
(glibc's heap).

glibc keeps freed heap memory for reuse, and raises its mmap threshold (the size above which a
block is a mapping of its own, unmapped when freed) each time such a block is freed, up to 32
MiB. A process that allocates and frees many tensors of a few MiB (a converter going tensor by
tensor, a forward pass reading one module at a time, a scan thread beside mergekit) then stays
at its high-water mark, and which runs stay there depends on thread timing: the peak RSS a
benchmark reports jumps between two values. Stdlib only: the llama.cpp child imports it.

The opposite suits a process whose job is to allocate the same large tensors over and over (a
sweep's trials): `keep_freed_memory`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

# For a child process: glibc reads it at start-up; a fixed threshold is never raised.
FIXED_MMAP_THRESHOLD_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def give_back_freed_memory() -> None:
    """Collect garbage, then return the heap's free pages (every arena's) to the system."""
    import gc

    gc.collect()
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_FREED_MEMORY_ENV = "MEDRELEASE_KEEP_FREED_MEMORY"
# blocks up to 2 GiB come from the heap (mallopt takes an int); a glibc that refuses a threshold
# above 32 MiB (its own limit for the adjusted one) gets that
KEPT_BLOCK_MAX = (2**31 - 1, 32 << 20)
KEPT_TOP_MAX = 1 << 30  # free memory at the heap's top beyond 1 GiB still goes back
_keeping = False


def keep_freed_memory() -> bool:
    """From now on, this process keeps the large blocks it frees for its next allocations;
    returns whether it does (glibc only; `MEDRELEASE_KEEP_FREED_MEMORY=0` turns it off).

    Why: above glibc's mmap threshold (raised as blocks are freed, up to 32 MiB) a block is a
    mapping of its own, unmapped when freed, so the next one is fresh memory that the kernel
    zeroes again, page fault by page fault. A sweep trial's merge allocates and frees
    temporaries of every tensor (SmolLM2-135M: 272 tensors, three models): 0.7-1.5 CPU-seconds
    of kernel time per merge on a 2-core machine, 0.1-0.2 with this; the real-tier sweep
    bench's merge went from 4.7-5.1 s to 4.1-4.2 s (docs/sweep.md). The results are the same
    bytes: only where the memory comes from changes. The peak RSS is the same (2.09 vs 2.10 GB
    over four merges); what changes is that freed memory stays with the process until it ends
    or `give_back_freed_memory` runs.

    glibc has no way to read these settings back, and setting them ends its own adjustment of
    the threshold for good, so this is for processes that run trials: `medrelease sweep`'s
    with the local executor, and Ray's trial workers. Calling it again does nothing.
    """
    global _keeping
    if _keeping:
        return True
    libc = None if os.environ.get(KEEP_FREED_MEMORY_ENV, "1") == "0" else _glibc()
    if libc is None:
        return False
    try:
        raised = any(libc.mallopt(M_MMAP_THRESHOLD, size) for size in KEPT_BLOCK_MAX)
        _keeping = raised and bool(libc.mallopt(M_TRIM_THRESHOLD, KEPT_TOP_MAX))
    except AttributeError:
        return False
    return _keeping


def _glibc() -> Any:
    """This process's glibc (ctypes), or None off glibc (macOS, musl, Windows)."""
    try:
        if os.confstr("CS_GNU_LIBC_VERSION") is None:
            return None
        import ctypes

        return ctypes.CDLL("libc.so.6")
    except (ValueError, OSError, AttributeError):
        return None


TORCH_HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"


@contextlib.contextmanager
def torch_huge_pages() -> Iterator[None]:
    """torch's CPU allocations of 2 MiB and more backed by transparent huge pages, in this
    process (not its children), unless the user set THP_MEM_ALLOC_ENABLE themselves.

    Every tensor mergekit loads, merges or writes is fresh memory, first touched one 4 KiB page
    at a time: 44 of its 76 CPU-seconds merging two 7B stages went to the kernel. With huge pages
    (torch's own option; the kernel's default "madvise" mode honours it): 23, and the merge took
    45 s instead of 53. torch reads the variable at its first allocation in a process and keeps
    that answer (importing mergekit allocates already), so this takes effect only where torch has
    allocated nothing yet: the merge block's check (the first import of mergekit in a
    process that merges) and the merge step use it; elsewhere it changes nothing. Results are
    bit-identical either way.
    """
    if TORCH_HUGE_PAGES_ENV in os.environ:
        yield
        return
    os.environ[TORCH_HUGE_PAGES_ENV] = "1"
    try:
        yield
    finally:  # children (a converter, llama.cpp) keep their own memory behaviour
        os.environ.pop(TORCH_HUGE_PAGES_ENV, None)
