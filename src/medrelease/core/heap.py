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
import sys

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
