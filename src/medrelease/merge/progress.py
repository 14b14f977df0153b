"""Show mergekit's own progress (it uses tqdm) as rows of our rich progress display.

mergekit reports its work through `tqdm.tqdm(...)` in two modules. For the duration of a
merge we hand those modules a tqdm subclass that forwards counts to rich instead of drawing
its own bar; nothing in mergekit is changed.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

from medrelease.core.console import Reporter
from medrelease.core.rich_tqdm import rich_tqdm

DESCRIPTIONS = {
    "Warmup loader cache": "loading checkpoints",
    "Executing graph": "merging tensors",
}


@contextlib.contextmanager
def mergekit_progress(reporter: Reporter) -> Iterator[None]:
    import mergekit.graph
    import mergekit.merge

    saved = (mergekit.graph.tqdm, mergekit.merge.tqdm)
    with reporter.progress() as progress:
        rows = None if reporter.quiet else progress
        shim = types.SimpleNamespace(tqdm=rich_tqdm(rows, lambda d: DESCRIPTIONS.get(d, d)))
        mergekit.graph.tqdm = shim
        mergekit.merge.tqdm = shim
        try:
            yield
        finally:
            mergekit.graph.tqdm, mergekit.merge.tqdm = saved
