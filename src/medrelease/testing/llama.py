"""llama.cpp in the test's own process, for tests and benchmarks that compare runtimes.

The quantize step never does this: it reaches llama.cpp through child processes
(quantize/gguf/child.py), where an abort is harmless. A test that holds the model open can
call it directly (tokenize, eval, scores) and compare with what the step recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_gguf(path: Path, n_ctx: int, threads: int) -> Any:
    """A llama_cpp.Llama on `path` with logits for every position, quiet (the step's child
    opens its models the same way: quantize/gguf/child.py `open_llama`)."""
    from medrelease.quantize.gguf.child import open_llama

    return open_llama(str(path), n_ctx, threads, verbose=False)
