"""Memory the process has freed, given back to the system (glibc's heap).

glibc keeps freed heap memory for reuse, and raises its mmap threshold (the size above which a
block is a mapping of its own, unmapped when freed) each time such a block is freed, up to 32
MiB. A process that allocates and frees many tensors of a few MiB (a converter going tensor by
tensor, a forward pass reading one module at a time, a scan thread beside mergekit) then stays
at its high-water mark, and which runs stay there depends on thread timing: the peak RSS a
benchmark reports jumps between two values. Stdlib only: the llama.cpp child imports it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

# For a child process: glibc reads it at start-up; a fixed threshold is never raised.
FIXED_MMAP_THRESHOLD_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def give_back_freed_memory() -> None:
    """Collect garbage, then return the heap's free pages (every arena's) to the system."""
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


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
