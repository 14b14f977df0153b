"""Show mergekit's own progress (it uses tqdm) as rows of our rich progress display.

mergekit reports its work through `tqdm.tqdm(...)` in two modules. For the duration of a
merge we hand those modules a tqdm subclass that forwards counts to rich instead of drawing
its own bar; nothing in mergekit is changed.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

from medrelease.core.console import Reporter

DESCRIPTIONS = {
    "Warmup loader cache": "loading checkpoints",
    "Executing graph": "merging tensors",
}


@contextlib.contextmanager
def mergekit_progress(reporter: Reporter) -> Iterator[None]:
    import mergekit.graph
    import mergekit.merge
    import tqdm as tqdm_mod

    progress_holder: dict[str, Any] = {}

    class RichTqdm(tqdm_mod.tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            desc = kwargs.get("desc") or ""
            kwargs["disable"] = False
            kwargs["file"] = open("/dev/null", "w")  # noqa: SIM115 - closed in close()
            super().__init__(*args, **kwargs)
            progress = progress_holder.get("p")
            self._rich = None
            if progress is not None and not reporter.quiet:
                self._rich = progress.add_task(DESCRIPTIONS.get(desc, desc), total=self.total)

        def __iter__(self):
            # tqdm batches its own counter updates; count items ourselves
            for done, item in enumerate(super().__iter__(), start=1):
                if self._rich is not None:
                    progress_holder["p"].update(self._rich, completed=done)
                yield item

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            if self._rich is not None:
                progress_holder["p"].update(self._rich, completed=self.n)
            return out

        def close(self) -> None:
            fp = self.fp
            super().close()
            with contextlib.suppress(Exception):
                fp.close()

    shim = types.SimpleNamespace(tqdm=RichTqdm)
    saved = (mergekit.graph.tqdm, mergekit.merge.tqdm)
    with reporter.progress() as progress:
        progress_holder["p"] = progress
        mergekit.graph.tqdm = shim
        mergekit.merge.tqdm = shim
        try:
            yield
        finally:
            mergekit.graph.tqdm, mergekit.merge.tqdm = saved
